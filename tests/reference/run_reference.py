#!/usr/bin/env python3
"""Greedy generation with the independent numpy reference (reference_model.py).

  run_reference.py MODEL.gguf --tokens 1,72,101 -n 8 [--ignore-rope-freqs] [--ignore-rope-scaling]

Prints one line per generated token, `step <i> token <id> logits <v0> <v1> ...` (the logits that
chose it, %.9g), so a test can compare tokens and logits with the engine's."""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="comma-separated prompt token ids")
    ap.add_argument("-n", type=int, default=8, help="tokens to generate")
    ap.add_argument("--ignore-rope-freqs", action="store_true",
                    help="leave rope_freqs.weight out (shows that the factors matter)")
    ap.add_argument("--ignore-rope-scaling", action="store_true",
                    help="leave rope.scaling.* out (shows that the scaling matters)")
    args = ap.parse_args()
    model = reference_model.Model(args.model, ignore_rope_freqs=args.ignore_rope_freqs,
                                  ignore_rope_scaling=args.ignore_rope_scaling)
    prompt = [int(t) for t in args.tokens.split(",") if t]
    for t in prompt[:-1]:
        model.forward(t)
    token = prompt[-1]
    for step in range(args.n):
        logits = model.forward(token)
        token = int(np.argmax(logits))
        values = " ".join("%.9g" % v for v in logits)
        print(f"step {step} token {token} logits {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
