#!/usr/bin/env bash
# CPU backend benchmark: builds `swarm` (Release), makes the synthetic TinyLlama-1.1B-shaped models
# (seeded random weights at the real shape, the Llama-2 SPM vocabulary; one file per weight type,
# in the git-ignored models/ folder), runs `swarm bench` on each with the same thread count, and
# records a table of the results in docs/BENCHMARKS.md (between the cpu-bench markers) together
# with the command that reproduces it. The JSON of every run is kept in BUILD_DIR/bench-results/.
#
# `swarm bench` measures the machine's read bandwidth and fp32 FMA peak in the same run, and
# reports generation tokens/s as a fraction of the bandwidth bound (weight bytes per token /
# bandwidth) and prompt tokens/s as a fraction of the FMA peak. On a shared machine other
# processes lower every figure; each run reports its cpu_utilization (1.0 = the cores were ours),
# and this script repeats a type up to ATTEMPTS times, keeping the run with the highest utilization.
#
# Usage: scripts/bench.sh [BUILD_DIR]   (default: build-bench)
# Environment: THREADS (default 2), PROMPT (512), GEN (64), REPS (3), ATTEMPTS (3),
#              TYPES ("f32 f16 bf16 q8_0 q4_0 q4_k q6_k"), BACKEND (cpu), NO_DOC=1 (no doc update)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
build_dir="${1:-build-bench}"
threads="${THREADS:-2}"
prompt="${PROMPT:-512}"
gen="${GEN:-64}"
reps="${REPS:-3}"
attempts="${ATTEMPTS:-3}"
types="${TYPES:-f32 f16 bf16 q8_0 q4_0 q4_k q6_k}"
backend="${BACKEND:-cpu}"
models_dir="${repo_root}/models"  # git-ignored
results_dir="${build_dir}/bench-results"
vocab="${repo_root}/../shared/tokenizer-vectors/ggml-vocab-llama-spm.gguf"
swarm="${build_dir}/src/cli/swarm"

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWARM_CUDA=OFF >&2
cmake --build "$build_dir" --target swarm -j "$(nproc)" >&2
mkdir -p "$models_dir" "$results_dir"

for type in $types; do
  model="${models_dir}/tinyllama-1.1b-${type}.gguf"
  if [[ ! -f "$model" ]]; then
    echo "bench: making $model" >&2
    "$swarm" make-model --preset tinyllama-1.1b --type "$type" --vocab "$vocab" -o "$model" >&2
  fi
  best=""
  best_util=-1
  for attempt in $(seq 1 "$attempts"); do
    out="${results_dir}/bench-${type}-${attempt}.json"
    "$swarm" bench -m "$model" --backend "$backend" -t "$threads" -p "$prompt" -n "$gen" \
      -r "$reps" --profile --json "$out" >/dev/null
    util=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print(min(d['prompt']['cpu_utilization'], d['generation']['cpu_utilization']))" "$out")
    echo "bench: ${type} attempt ${attempt}: cpu utilization ${util}" >&2
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" \
        "$util" "$best_util"; then
      best="$out"
      best_util="$util"
    fi
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.95 else 1)" "$util" && break
  done
  cp "$best" "${results_dir}/bench-${type}.json"
done

command="THREADS=${threads} PROMPT=${prompt} GEN=${gen} REPS=${reps} ATTEMPTS=${attempts} TYPES=\"${types}\" scripts/bench.sh"
table=$(python3 - "$results_dir" "$command" $types <<'PY'
import json, sys, datetime
results_dir, command, types = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = [json.load(open(f"{results_dir}/bench-{t}.json")) for t in types]
m = runs[0]["machine"]
out = []
out.append(f"Measured {datetime.date.today().isoformat()} on {m['cpu']} ({m['features']}), "
           f"{m['threads']} threads, backend `{runs[0]['backend']['name']}`. Reproduce with:\n")
out.append(f"```\n{command}\n```\n")
if "amx(not granted)" in m['features']:
    amx = "AMX: advertised by cpuid but refused by the OS (ARCH_REQ_XCOMP_PERM): not used"
elif "amx" in m['features']:
    amx = "AMX: granted, but the backend has no AMX kernels yet: not used"
else:
    amx = "AMX: not advertised by this processor (cpuid has no amx_tile): not used"
out.append(f"{amx}. Wall-time figures are what the run got; the `cpu` columns divide by the "
           "process's CPU time instead (what the code does when the cores are its own; see "
           "`cpu util`, 1.00 = nothing else ran).\n")
out.append("`weights read` is the probe's read loop run over the model's own weights where the "
           "backend holds them (the mapped file, or its own copies in the layouts it rewrote), right after each chunk of 8 generated tokens (median over the chunks; a VM's "
           "memory rate can drift within seconds); `gen % of weights read` is the median of the "
           "chunks' generation rates against the read beside them, with their range in brackets.\n")
out.append("| type | GB/token | read BW GB/s | gen tok/s | bound tok/s | **gen % of bound** | gen % cpu "
           "| weights read GB/s | **gen % of weights read** "
           "| FMA peak GFLOP/s | prompt tok/s | prompt GFLOP/s | **prompt % of peak** | prompt % cpu "
           "| cpu util |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for t, r in zip(types, runs):
    g, p, mm = r["generation"], r["prompt"], r["machine"]
    util = min(g["cpu_utilization"], p["cpu_utilization"])
    out.append(f"| {t} | {r['model']['weight_bytes_per_token']/1e9:.3f} "
               f"| {mm['read_bandwidth_gb_per_s']:.1f} | {g['tokens_per_second']:.2f} "
               f"| {g['bandwidth_bound_tokens_per_second']:.2f} "
               f"| **{100*g['fraction_of_bandwidth_bound']:.0f}%** "
               f"| {100*g['fraction_of_bandwidth_bound_cpu']:.0f}% "
               f"| {g.get('weights_read_gb_per_s', 0):.1f} "
               f"| **{100*g.get('fraction_of_weights_read_bound', 0):.0f}%** "
               f"({100*g.get('fraction_of_weights_read_bound_min', 0):.0f}–"
               f"{100*g.get('fraction_of_weights_read_bound_max', 0):.0f}%) "
               f"| {mm['fma_peak_gflops']:.0f} "
               f"| {p['tokens_per_second']:.1f} | {p['gflops']:.0f} "
               f"| **{100*p['fraction_of_fma_peak']:.0f}%** "
               f"| {100*p['fraction_of_fma_peak_cpu']:.0f}% | {util:.2f} |")
out.append("")
kinds = ["matmul", "attention", "quantize_x8", "rms_norm", "rope", "swiglu", "add", "other"]
def shares(by_kind):
    s = {k: 0.0 for k in kinds}
    rates = []
    for o in by_kind:
        k = "matmul" if o["op"].startswith("matmul") else o["op"]
        s[k if k in s else "other"] += o["share_of_wall"]
        if o["op"].startswith("matmul") and "gflops" in o:
            rates.append(o)
    return s, rates
for phase, label in (("prompt", f"prompt ({runs[0]['prompt']['tokens']} tokens)"),
                     ("generation", "generation (one token per step)")):
    out.append(f"Where the time goes, {label}: share of the profiled pass's wall time per kind "
               "of operation (`--profile`; `other` = outside the backend: embedding, head glue, "
               "sampling)\n")
    out.append("| type | " + " | ".join(kinds) + " | matmul rate by weight type |")
    out.append("|---|" + "---|" * (len(kinds) + 1))
    for t, r in zip(types, runs):
        by_kind = r.get("profile", {}).get(f"{phase}_by_kind", [])
        s, rates = shares(by_kind)
        rate = "<br>".join(
            f"{o['op'][7:]}: " + (f"{o['gflops']:.0f} GFLOP/s" if phase == "prompt"
                                  else f"{o['weight_gb_per_s']:.1f} GB/s") for o in rates)
        out.append(f"| {t} | " + " | ".join(f"{100*s[k]:.1f}%" for k in kinds) + f" | {rate} |")
    out.append("")
print("\n".join(out))
PY
)
echo "$table"

if [[ -z "${NO_DOC:-}" ]]; then
  doc="docs/BENCHMARKS.md"
  [[ -f "$doc" ]] || printf '# Benchmarks\n' > "$doc"
  # The table lives between the cpu-bench markers, inside the "## CPU engine (issue 3)" section
  # (created at the end of the file when absent); nothing else in the file is touched.
  python3 - "$doc" <<'PY'
import sys
doc = sys.argv[1]
text = open(doc).read()
if "<!-- cpu-bench:begin -->" not in text:
    heading = "## CPU engine (issue 3)"
    markers = "<!-- cpu-bench:begin -->\n<!-- cpu-bench:end -->\n"
    if heading in text:
        at = text.index(heading)
        nxt = text.find("\n## ", at + len(heading))
        end = len(text) if nxt < 0 else nxt + 1
        section = text[at:end].rstrip("\n") + "\n\n" + markers + ("\n" if nxt >= 0 else "")
        text = text[:at] + section + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + heading + "\n\n" + markers
    open(doc, "w").write(text)
PY
  python3 - "$doc" "$table" <<'PY'
import sys, re
doc, table = sys.argv[1], sys.argv[2]
text = open(doc).read()
text = re.sub(r"<!-- cpu-bench:begin -->.*?<!-- cpu-bench:end -->",
              lambda _: "<!-- cpu-bench:begin -->\n" + table + "\n<!-- cpu-bench:end -->",
              text, flags=re.S)
open(doc, "w").write(text)
PY
  echo "bench: updated $doc" >&2
fi
