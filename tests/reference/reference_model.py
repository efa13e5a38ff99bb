"""An independent float64 forward pass of the GGUF architectures the engine runs, in the spirit of
llama2.c's run.c: read the hyper-parameters and weights from the GGUF (gguf_reader, dequantize),
run one token at a time with a KV cache, return logits. The feed-forward part is a hook
(`FFN_VARIANTS`), so a mixture-of-experts FFN plugs in beside the dense one."""

import math

import numpy as np

import dequantize
import moe_ffn
from gguf_reader import GgufFile


class Config:
    def __init__(self, gguf):
        arch = gguf.get("general.architecture")
        self.arch = arch
        g = lambda key, default=None: gguf.get(f"{arch}.{key}", default)
        self.n_layer = int(g("block_count"))
        self.n_embd = int(g("embedding_length"))
        self.n_head = int(g("attention.head_count"))
        self.n_head_kv = int(g("attention.head_count_kv", self.n_head))
        self.head_dim = int(g("attention.key_length", self.n_embd // self.n_head))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.rope_base = float(g("rope.freq_base", 10000.0))
        self.n_ctx_train = int(g("context_length"))
        # RoPE pairs: llama rotates (x[2i], x[2i+1]); the Qwen family (x[i], x[i + d/2]).
        self.neox = arch in ("qwen2", "qwen3", "qwen3moe")
        self.scaling = g("rope.scaling.type", "none")
        factor = float(g("rope.scaling.factor", 0.0) or 0.0)
        self.freq_scale = 1.0 if factor == 0.0 or self.scaling == "none" else 1.0 / factor
        self.orig_ctx = int(g("rope.scaling.original_context_length", self.n_ctx_train))
        self.attn_factor = float(g("rope.scaling.attn_factor", 1.0))
        self.ext_factor = float(g("rope.scaling.yarn_ext_factor",
                                  1.0 if self.scaling == "yarn" else 0.0))
        self.attn_factor *= float(g("rope.scaling.yarn_attn_factor", 1.0))
        self.beta_fast = float(g("rope.scaling.yarn_beta_fast", 32.0))
        self.beta_slow = float(g("rope.scaling.yarn_beta_slow", 1.0))


def rope_tables(c, freq_factors):
    """Per pair i of a head: its angle per position and the magnitude factor of cos and sin.

    theta_i(p) = p * base^(-2i/d) / factor_i, interpolated by freq_scale (linear scaling); YaRN
    mixes interpolated and extrapolated angles by a ramp over the pair index between the
    correction dims of beta_fast and beta_slow rotations at the original context, and scales cos
    and sin by 1 + 0.1 ln(1/freq_scale)."""
    d = c.head_dim
    i = np.arange(d // 2, dtype=np.float64)
    extrap = c.rope_base ** (-2.0 * i / d)
    if freq_factors is not None:
        extrap = extrap / freq_factors
    interp = c.freq_scale * extrap
    mscale = c.attn_factor
    if c.ext_factor != 0.0:
        def corr_dim(n_rot):
            return d * math.log(c.orig_ctx / (n_rot * 2 * math.pi)) / (2 * math.log(c.rope_base))
        low = max(0.0, math.floor(corr_dim(c.beta_fast)))
        high = min(d - 1.0, math.ceil(corr_dim(c.beta_slow)))
        ramp = 1.0 - np.clip((i - low) / max(0.001, high - low), 0.0, 1.0)
        mix = ramp * c.ext_factor
        freq = interp * (1.0 - mix) + extrap * mix
        mscale *= 1.0 + 0.1 * math.log(1.0 / c.freq_scale)
    else:
        freq = interp
    return freq, mscale


def rope(x, pos, freq, mscale, neox):
    # x: [n_heads, head_dim], rotated in place
    half = x.shape[1] // 2
    cos = np.cos(pos * freq) * mscale
    sin = np.sin(pos * freq) * mscale
    if neox:
        a, b = x[:, :half].copy(), x[:, half:].copy()
        x[:, :half] = a * cos - b * sin
        x[:, half:] = a * sin + b * cos
    else:
        a, b = x[:, 0::2].copy(), x[:, 1::2].copy()
        x[:, 0::2] = a * cos - b * sin
        x[:, 1::2] = a * sin + b * cos


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def dense_ffn(model, layer, xb):
    w = model.layer_tensor
    gate = w(layer, "ffn_gate.weight") @ xb
    up = w(layer, "ffn_up.weight") @ xb
    return w(layer, "ffn_down.weight") @ (silu(gate) * up)


# A block's feed-forward: a function (model, layer, xb: [n_embd]) -> [n_embd], picked per model by
# Model.ffn_variant(). A mixture of experts registers its own.
FFN_VARIANTS = {"dense": dense_ffn, "moe": moe_ffn.moe_ffn}


class Model:
    def __init__(self, path, ignore_rope_freqs=False, ignore_rope_scaling=False):
        self.gguf = GgufFile(path)
        self.c = Config(self.gguf)
        if ignore_rope_scaling:
            self.c.freq_scale, self.c.ext_factor, self.c.attn_factor = 1.0, 0.0, 1.0
        self._cache = {}
        factors = None
        if self.gguf.has_tensor("rope_freqs.weight") and not ignore_rope_freqs:
            factors = self.tensor("rope_freqs.weight")
        self.freq, self.mscale = rope_tables(self.c, factors)
        self.qkv_bias = self.gguf.has_tensor("blk.0.attn_q.bias")
        self.qk_norm = self.gguf.has_tensor("blk.0.attn_q_norm.weight")
        self.embd = self.tensor("token_embd.weight")
        self.output_norm = self.tensor("output_norm.weight")
        self.output = (self.tensor("output.weight") if self.gguf.has_tensor("output.weight")
                       else self.embd)
        self.ffn = FFN_VARIANTS[self.ffn_variant()]
        self.reset()

    def ffn_variant(self):
        n_expert, _ = moe_ffn.expert_counts(self)
        return "moe" if n_expert > 0 else "dense"

    def tensor(self, name):
        if name not in self._cache:
            self._cache[name] = dequantize.tensor_to_array(self.gguf.tensors[name])
        return self._cache[name]

    def layer_tensor(self, layer, name):
        return self.tensor(f"blk.{layer}.{name}")

    def reset(self):
        c = self.c
        self.keys = [[] for _ in range(c.n_layer)]    # per layer: [pos] of [n_head_kv, head_dim]
        self.values = [[] for _ in range(c.n_layer)]
        self.pos = 0

    def forward(self, token):
        """Logits [n_vocab] after appending token at the next position."""
        c, w = self.c, self.layer_tensor
        x = self.embd[token].copy()
        hd, group = c.head_dim, c.n_head // c.n_head_kv
        for l in range(c.n_layer):
            xb = rmsnorm(x, w(l, "attn_norm.weight"), c.eps)
            q, k, v = w(l, "attn_q.weight") @ xb, w(l, "attn_k.weight") @ xb, w(l, "attn_v.weight") @ xb
            if self.qkv_bias:
                q, k, v = q + w(l, "attn_q.bias"), k + w(l, "attn_k.bias"), v + w(l, "attn_v.bias")
            q = q.reshape(c.n_head, hd)
            k = k.reshape(c.n_head_kv, hd)
            v = v.reshape(c.n_head_kv, hd)
            if self.qk_norm:
                q = rmsnorm(q, w(l, "attn_q_norm.weight"), c.eps)
                k = rmsnorm(k, w(l, "attn_k_norm.weight"), c.eps)
            rope(q, self.pos, self.freq, self.mscale, c.neox)
            rope(k, self.pos, self.freq, self.mscale, c.neox)
            self.keys[l].append(k)
            self.values[l].append(v)
            keys = np.stack(self.keys[l], axis=1)      # [n_head_kv, pos + 1, head_dim]
            values = np.stack(self.values[l], axis=1)
            att = np.empty((c.n_head, hd))
            for h in range(c.n_head):
                scores = keys[h // group] @ q[h] / math.sqrt(hd)
                p = np.exp(scores - scores.max())
                att[h] = (p / p.sum()) @ values[h // group]
            x = x + w(l, "attn_output.weight") @ att.reshape(-1)
            xb = rmsnorm(x, w(l, "ffn_norm.weight"), c.eps)
            x = x + self.ffn(self, l, xb)
        self.pos += 1
        return self.output @ rmsnorm(x, self.output_norm, c.eps)
