"""Dequantizers for GGML weight types, written from the published block layouts (ggml-common.h's
block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1, block_q2_K, block_q3_K, block_q4_K,
block_q5_K, block_q6_K, block_iq4_nl, block_iq4_xs): bytes -> float64 rows. Register a new type by adding a function to
DEQUANTIZERS."""

import numpy as np

QK_K = 256


def _f16(raw):
    return np.frombuffer(raw, dtype="<f2").astype(np.float64)


def _blocks(raw, n, block_elems, block_bytes):
    if n % block_elems:
        raise ValueError(f"{n} elements are not whole blocks of {block_elems}")
    n_blocks = n // block_elems
    return np.frombuffer(raw, dtype=np.uint8, count=n_blocks * block_bytes).reshape(
        n_blocks, block_bytes)


def f32(raw, n):
    return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float64)


def f16(raw, n):
    return np.frombuffer(raw, dtype="<f2", count=n).astype(np.float64)


def bf16(raw, n):
    bits = np.frombuffer(raw, dtype="<u2", count=n).astype(np.uint32) << 16
    return bits.view(np.float32).astype(np.float64)


def q8_0(raw, n):
    # block: f16 d, int8 q[32]; x = d * q
    b = _blocks(raw, n, 32, 34)
    d = _f16(b[:, 0:2].tobytes())
    q = b[:, 2:].view(np.int8).astype(np.float64)
    return (d[:, None] * q).reshape(-1)


def q4_0(raw, n):
    # block: f16 d, u8 qs[16]; x[j] = d * (low nibble - 8), x[j + 16] = d * (high nibble - 8)
    b = _blocks(raw, n, 32, 18)
    d = _f16(b[:, 0:2].tobytes())
    qs = b[:, 2:]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float64) - 8.0
    return (d[:, None] * q).reshape(-1)


def _scale_min_k4(scales, j):
    # scales: [n_blocks, 12] packed 6-bit (scale, min) pairs for the 8 sub-blocks of 32.
    if j < 4:
        return scales[:, j] & 63, scales[:, j + 4] & 63
    sc = (scales[:, j + 4] & 0xF) | ((scales[:, j - 4] >> 6) << 4)
    m = (scales[:, j + 4] >> 4) | ((scales[:, j] >> 6) << 4)
    return sc, m


def q4_k(raw, n):
    # block: f16 d, f16 dmin, u8 scales[12], u8 qs[128]; sub-block s of 32: x = d*sc_s*q - dmin*m_s
    b = _blocks(raw, n, QK_K, 144)
    d = _f16(b[:, 0:2].tobytes())
    dmin = _f16(b[:, 2:4].tobytes())
    scales = b[:, 4:16].astype(np.int64)
    qs = b[:, 16:]
    out = np.empty((b.shape[0], QK_K))
    for j in range(4):  # 64 values: low nibbles of qs[32j..32j+32), then high nibbles
        q = qs[:, 32 * j:32 * j + 32]
        for half, nibbles in ((0, q & 0xF), (1, q >> 4)):
            sc, m = _scale_min_k4(scales, 2 * j + half)
            lo = 64 * j + 32 * half
            out[:, lo:lo + 32] = (d * sc)[:, None] * nibbles - (dmin * m)[:, None]
    return out.reshape(-1)


def q6_k(raw, n):
    # block: u8 ql[128], u8 qh[64], int8 scales[16], f16 d; 6-bit q = low 4 bits | 2 high bits
    b = _blocks(raw, n, QK_K, 210)
    ql_all = b[:, 0:128].astype(np.int64)
    qh_all = b[:, 128:192].astype(np.int64)
    sc_all = b[:, 192:208].view(np.int8).astype(np.float64)
    d = _f16(b[:, 208:210].tobytes())
    out = np.empty((b.shape[0], QK_K))
    for h in range(2):  # two halves of 128 values
        ql = ql_all[:, 64 * h:64 * h + 64]
        qh = qh_all[:, 32 * h:32 * h + 32]
        sc = sc_all[:, 8 * h:8 * h + 8]
        quarters = [
            (ql[:, 0:32] & 0xF) | (((qh >> 0) & 3) << 4),
            (ql[:, 32:64] & 0xF) | (((qh >> 2) & 3) << 4),
            (ql[:, 0:32] >> 4) | (((qh >> 4) & 3) << 4),
            (ql[:, 32:64] >> 4) | (((qh >> 6) & 3) << 4),
        ]
        for k, q in enumerate(quarters):
            lo = 128 * h + 32 * k
            for part in range(2):  # a scale per 16 values
                s = sc[:, 2 * k + part]
                out[:, lo + 16 * part:lo + 16 * part + 16] = (
                    (d * s)[:, None] * (q[:, 16 * part:16 * part + 16] - 32))
    return out.reshape(-1)


def q4_1(raw, n):
    # block: f16 d, f16 m, u8 qs[16]; x[j] = d * low nibble + m, x[j + 16] = d * high nibble + m
    b = _blocks(raw, n, 32, 20)
    d = _f16(b[:, 0:2].tobytes())
    m = _f16(b[:, 2:4].tobytes())
    qs = b[:, 4:]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float64)
    return (d[:, None] * q + m[:, None]).reshape(-1)


def q5_0(raw, n):
    # block: f16 d, u8 qh[4] (bit j: fifth bit of value j), u8 qs[16]; x = d * (5-bit q - 16)
    b = _blocks(raw, n, 32, 22)
    d = _f16(b[:, 0:2].tobytes())
    qh = b[:, 2:6].copy().view("<u4").astype(np.int64)  # [n_blocks, 1]
    qs = b[:, 6:].astype(np.int64)
    low = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    high = (qh >> np.arange(32)[None, :]) & 1
    q = (low | (high << 4)).astype(np.float64) - 16.0
    return (d[:, None] * q).reshape(-1)


def q5_1(raw, n):
    # block: f16 d, f16 m, u8 qh[4] (bit j: fifth bit of value j), u8 qs[16]; x = d * 5-bit q + m
    b = _blocks(raw, n, 32, 24)
    d = _f16(b[:, 0:2].tobytes())
    m = _f16(b[:, 2:4].tobytes())
    qh = b[:, 4:8].copy().view("<u4").astype(np.int64)  # [n_blocks, 1]
    qs = b[:, 8:].astype(np.int64)
    low = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    high = (qh >> np.arange(32)[None, :]) & 1
    q = (low | (high << 4)).astype(np.float64)
    return (d[:, None] * q + m[:, None]).reshape(-1)


def iq4_nl(raw, n):
    # block: f16 d, u8 qs[16] (low nibbles values 0-15, high nibbles 16-31), each nibble an index
    # into the 16 IQ4_NL levels; x = d * level
    b = _blocks(raw, n, 32, 18)
    d = _f16(b[:, 0:2].tobytes())
    qs = b[:, 2:].astype(np.int64)
    idx = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    return (d[:, None] * IQ4_NL_VALUES[idx]).reshape(-1)


def q2_k(raw, n):
    # block: u8 scales[16] (low nibble scale, high nibble min, one per 16 values), u8 qs[64],
    # f16 d, f16 dmin; x = d * scale * q - dmin * min, q 2 bits. Each 128-value half reads 32 qs
    # bytes four times, at bit shifts 0, 2, 4, 6; each pass gives two groups of 16.
    b = _blocks(raw, n, QK_K, 84)
    scales = b[:, 0:16].astype(np.int64)
    qs = b[:, 16:80].astype(np.int64)
    d = _f16(b[:, 80:82].tobytes())
    dmin = _f16(b[:, 82:84].tobytes())
    out = np.empty((b.shape[0], QK_K))
    group = 0
    for h in range(2):
        q_half = qs[:, 32 * h:32 * h + 32]
        for shift in range(0, 8, 2):
            q = (q_half >> shift) & 3
            for part in range(2):
                sc = scales[:, group]
                lo = 16 * group
                out[:, lo:lo + 16] = ((d * (sc & 0xF))[:, None] * q[:, 16 * part:16 * part + 16] -
                                      (dmin * (sc >> 4))[:, None])
                group += 1
    return out.reshape(-1)


def q3_k(raw, n):
    # block: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d. 16 signed 6-bit scales (minus 32), one
    # per 16 values: low 4 bits from nibble i // 8 of byte i % 8, high 2 bits from bits
    # 2 * (i // 4) of byte 8 + i % 4. q = 2 low bits from qs (as q2_k) minus 4 where the hmask bit
    # is clear; hmask bit k of byte l belongs to the k-th 32-value pass.
    b = _blocks(raw, n, QK_K, 110)
    hmask = b[:, 0:32].astype(np.int64)
    qs = b[:, 32:96].astype(np.int64)
    sb = b[:, 96:108].astype(np.int64)
    d = _f16(b[:, 108:110].tobytes())
    scales = np.empty((b.shape[0], 16), dtype=np.int64)
    for i in range(16):
        low = (sb[:, i % 8] >> (4 * (i // 8))) & 0xF
        high = (sb[:, 8 + i % 4] >> (2 * (i // 4))) & 3
        scales[:, i] = (low | (high << 4)) - 32
    out = np.empty((b.shape[0], QK_K))
    group = 0
    bit = 0
    for h in range(2):
        q_half = qs[:, 32 * h:32 * h + 32]
        for shift in range(0, 8, 2):
            q = ((q_half >> shift) & 3) - np.where((hmask >> bit) & 1, 0, 4)
            for part in range(2):
                lo = 16 * group
                out[:, lo:lo + 16] = (d * scales[:, group])[:, None] * q[:, 16 * part:16 * part + 16]
                group += 1
            bit += 1
    return out.reshape(-1)


def q5_k(raw, n):
    # block: f16 d, f16 dmin, u8 scales[12] (as q4_k), u8 qh[32], u8 qs[128]. As q4_k, with a fifth
    # bit per value: for sub-block s of 32, bit s of qh[l] belongs to value l.
    b = _blocks(raw, n, QK_K, 176)
    d = _f16(b[:, 0:2].tobytes())
    dmin = _f16(b[:, 2:4].tobytes())
    scales = b[:, 4:16].astype(np.int64)
    qh = b[:, 16:48].astype(np.int64)
    qs = b[:, 48:].astype(np.int64)
    out = np.empty((b.shape[0], QK_K))
    for j in range(4):
        q = qs[:, 32 * j:32 * j + 32]
        for half, nibbles in ((0, q & 0xF), (1, q >> 4)):
            s = 2 * j + half
            sc, m = _scale_min_k4(scales, s)
            values = nibbles | (((qh >> s) & 1) << 4)
            lo = 32 * s
            out[:, lo:lo + 32] = (d * sc)[:, None] * values - (dmin * m)[:, None]
    return out.reshape(-1)


# ggml's kvalues_iq4nl: the 16 levels a 4-bit IQ4_NL / IQ4_XS index selects.
IQ4_NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                         dtype=np.float64)


def iq4_xs(raw, n):
    # block: f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]. Sub-block s of 32: 6-bit scale = nibble
    # s % 2 of scales_l[s // 2] | bits 2s..2s+1 of scales_h << 4, minus 32; its 16 qs bytes hold
    # values l (low nibbles) and l + 16 (high nibbles), each an index into IQ4_NL_VALUES.
    b = _blocks(raw, n, QK_K, 136)
    d = _f16(b[:, 0:2].tobytes())
    scales_h = b[:, 2:4].copy().view("<u2").astype(np.int64)[:, 0]
    scales_l = b[:, 4:8].astype(np.int64)
    qs = b[:, 8:].astype(np.int64)
    out = np.empty((b.shape[0], QK_K))
    for s in range(8):
        ls = ((scales_l[:, s // 2] >> (4 * (s % 2))) & 0xF) | (((scales_h >> (2 * s)) & 3) << 4)
        q = qs[:, 16 * s:16 * s + 16]
        idx = np.concatenate([q & 0xF, q >> 4], axis=1)
        out[:, 32 * s:32 * s + 32] = (d * (ls - 32))[:, None] * IQ4_NL_VALUES[idx]
    return out.reshape(-1)


# ggml type id -> (dequantizer, elements per block, bytes per block)
DEQUANTIZERS = {
    0: (f32, 1, 4),
    1: (f16, 1, 2),
    2: (q4_0, 32, 18),
    3: (q4_1, 32, 20),
    6: (q5_0, 32, 22),
    7: (q5_1, 32, 24),
    8: (q8_0, 32, 34),
    10: (q2_k, QK_K, 84),
    11: (q3_k, QK_K, 110),
    12: (q4_k, QK_K, 144),
    13: (q5_k, QK_K, 176),
    14: (q6_k, QK_K, 210),
    20: (iq4_nl, 32, 18),
    23: (iq4_xs, QK_K, 136),
    30: (bf16, 1, 2),
}


def tensor_to_array(tensor):
    """A GgufTensor as a float64 array of shape reversed(ne): [n_out, n_in] for a matrix."""
    if tensor.type_id not in DEQUANTIZERS:
        raise ValueError(f"{tensor.name}: tensor type id {tensor.type_id} has no dequantizer here")
    fn, block_elems, block_bytes = DEQUANTIZERS[tensor.type_id]
    n = 1
    for v in tensor.ne:
        n *= v
    raw = tensor.data[:n // block_elems * block_bytes]
    return fn(raw, n).reshape(list(reversed(tensor.ne)))
