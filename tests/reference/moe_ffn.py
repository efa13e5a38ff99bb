"""The mixture-of-experts feed-forward for the numpy reference (reference_model.FFN_VARIANTS["moe"]),
as Mixtral (architecture `llama` with `expert_count`) and Qwen3-MoE define it: the router's
softmax over all experts, the `expert_used_count` most probable ones, their probabilities
renormalised to sum to 1, and the weighted sum of those experts' SwiGLU outputs. Expert tensors
are [n_in, n_out, n_expert] in GGUF order, so expert e is array[e] of shape [n_out, n_in]."""

import numpy as np


def expert_counts(model):
    arch = model.c.arch
    return (int(model.gguf.get(f"{arch}.expert_count", 0) or 0),
            int(model.gguf.get(f"{arch}.expert_used_count", 0) or 0))


def moe_ffn(model, layer, xb):
    w = model.layer_tensor
    _, n_used = expert_counts(model)
    logits = w(layer, "ffn_gate_inp.weight") @ xb  # [n_expert]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    chosen = np.argsort(-p, kind="stable")[:n_used]  # equal probabilities: lower index first
    weights = p[chosen] / p[chosen].sum()
    gate, up, down = (w(layer, f"ffn_{n}_exps.weight") for n in ("gate", "up", "down"))
    out = np.zeros_like(xb)
    for e, we in zip(chosen, weights):
        g = gate[e] @ xb
        out += we * (down[e] @ (g / (1.0 + np.exp(-g)) * (up[e] @ xb)))
    return out
