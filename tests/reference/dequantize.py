"""Dequantizers for GGML weight types, written from the published block layouts (ggml-common.h's
block_q8_0, block_q4_0, block_q4_K, block_q6_K): bytes -> float64 rows. Register a new type by
adding a function to DEQUANTIZERS."""

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


# ggml type id -> (dequantizer, elements per block, bytes per block)
DEQUANTIZERS = {
    0: (f32, 1, 4),
    1: (f16, 1, 2),
    2: (q4_0, 32, 18),
    8: (q8_0, 32, 34),
    12: (q4_k, QK_K, 144),
    14: (q6_k, QK_K, 210),
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
