#include "kernels/cpu/q5k_panels.h"

#include <cstddef>
#include <cstring>

#include "kernels/ggml_type.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kRows = static_cast<int>(kQ5KPanelRows);
constexpr size_t kGroupBytes = kRows * sizeof(BlockQ5_K);
constexpr size_t kNibOffset = 2 * kRows * sizeof(uint16_t);
constexpr size_t kHighOffset = kNibOffset + 64;
constexpr size_t kQuantOffset = kHighOffset + 32;
constexpr size_t kHalfBytes = 5 * 32;  // q[32] and a[4][32] of 4 steps
static_assert(kQuantOffset + 8 * kHalfBytes == kGroupBytes);

// The byte k (0..31) of the nibble and high-bit vectors holding sub-blocks s and 4 + s of row i
// (as q4k_panels.cpp).
int ByteOf(int i, int s) { return 16 * (i / 4) + 4 * (i % 4) + s; }

// The inverse of GetScaleMinK4: the 12 GGUF bytes of 8 6-bit scales and mins.
void PackK4(const uint8_t* sc, const uint8_t* m, uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
    q[j + 4] = static_cast<uint8_t>(m[j] | (m[j + 4] >> 4) << 6);
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4);
  }
}

// A 32-byte vector shifted as 16 little-endian 16-bit lanes (left by s > 0, right by -s), as the
// kernel's vpsllw / vpsrlw.
void Shift16(const uint8_t* v, int s, uint8_t* out) {
  for (int n = 0; n < 16; ++n) {
    uint32_t w = v[2 * n] | static_cast<uint32_t>(v[2 * n + 1]) << 8;
    w = s > 0 ? (w << s) & 0xffffu : w >> -s;
    out[2 * n] = static_cast<uint8_t>(w);
    out[2 * n + 1] = static_cast<uint8_t>(w >> 8);
  }
}

// The left shift of q that serves step k of a half (q5k_panels.h).
int QShift(int k) { return 3 - 2 * k; }

// The 5-bit values of the 4 steps of one half (lo[k][4i + m], hi[k][4i + m]) from its 160 bytes,
// the way the kernel reads them.
void DecodeHalf(const uint8_t* half, uint8_t lo[4][32], uint8_t hi[4][32]) {
  for (int k = 0; k < 4; ++k) {
    const uint8_t* a = half + 32 * (1 + k);
    uint8_t shifted_a[32], shifted_q[32];
    Shift16(a, -5, shifted_a);
    Shift16(half, QShift(k), shifted_q);
    for (int p = 0; p < 32; ++p) {
      lo[k][p] = a[p] & 0x1f;
      hi[k][p] = (shifted_a[p] ^ shifted_q[p]) & 0x1f;
    }
  }
}

// The 160 bytes of one half from its 5-bit values: q first (its bits 3-4 after the shift are what
// the shifted a brings in there, which even bytes take from the next byte's lo), then a's bits 5-7.
void EncodeHalf(const uint8_t lo[4][32], const uint8_t hi[4][32], uint8_t* half) {
  std::memset(half, 0, kHalfBytes);
  for (int k = 0; k < 4; ++k) {
    for (int p = 0; p < 32; ++p) {
      const int brought = p % 2 == 0 ? lo[k][p + 1] & 3 : 0;
      half[p] |= static_cast<uint8_t>(((hi[k][p] >> 3) ^ brought) << (2 * k));
    }
  }
  for (int k = 0; k < 4; ++k) {
    uint8_t shifted_q[32];
    Shift16(half, QShift(k), shifted_q);
    uint8_t* a = half + 32 * (1 + k);
    for (int p = 0; p < 32; ++p) {
      a[p] = static_cast<uint8_t>(lo[k][p] | ((hi[k][p] ^ shifted_q[p]) & 7) << 5);
    }
  }
}

// Value index (0..255) of the lo and hi values at step l, byte m of chunk j.
int LoIndex(int j, int l, int m) { return 64 * j + 4 * l + m; }

uint8_t Value5(const BlockQ5_K* blk, int e) {
  const int chunk = e / 64, pos = e % 32, upper = (e % 64) / 32;
  const uint8_t nib = static_cast<uint8_t>((blk->qs[32 * chunk + pos] >> (4 * upper)) & 0x0f);
  return static_cast<uint8_t>(nib | ((blk->qh[pos] >> (e / 32)) & 1) << 4);
}

// Moves super-block b of the 8 rows at `rows` (GGUF, row_bytes apart) into `group`.
void ToGroup(const uint8_t* rows, size_t row_bytes, int64_t b, uint8_t* group) {
  std::memset(group + kNibOffset, 0, kQuantOffset - kNibOffset);
  const BlockQ5_K* blks[kRows];
  for (int i = 0; i < kRows; ++i) {
    const auto* blk = reinterpret_cast<const BlockQ5_K*>(rows + i * row_bytes) + b;
    blks[i] = blk;
    std::memcpy(group + 2 * i, &blk->d, 2);
    std::memcpy(group + 2 * (kRows + i), &blk->dmin, 2);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      quant_internal::GetScaleMinK4(s, blk->scales, &sc, &m);
      const int k = ByteOf(i, s % 4);
      const int half = s / 4;
      group[kNibOffset + k] |= static_cast<uint8_t>((sc & 0x0f) << (4 * half));
      group[kNibOffset + 32 + k] |= static_cast<uint8_t>((m & 0x0f) << (4 * half));
      group[kHighOffset + k] |= static_cast<uint8_t>((sc >> 4) << (2 * half));
      group[kHighOffset + k] |= static_cast<uint8_t>((m >> 4) << (4 + 2 * half));
    }
  }
  for (int j = 0; j < 4; ++j) {
    for (int h = 0; h < 2; ++h) {
      uint8_t lo[4][32], hi[4][32];
      for (int k = 0; k < 4; ++k) {
        for (int i = 0; i < kRows; ++i) {
          for (int m = 0; m < 4; ++m) {
            const int e = LoIndex(j, 4 * h + k, m);
            lo[k][4 * i + m] = Value5(blks[i], e);
            hi[k][4 * i + m] = Value5(blks[i], e + 32);
          }
        }
      }
      EncodeHalf(lo, hi, group + kQuantOffset + (2 * j + h) * kHalfBytes);
    }
  }
}

}  // namespace

void Q5KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ5_K);
  for (int64_t g = group_begin; g < group_end; ++g) {
    const size_t start = static_cast<size_t>(g) * kRows * row_bytes;
    for (int64_t b = 0; b < n_super; ++b) {
      ToGroup(rows + start, row_bytes, b, panels + start + b * kGroupBytes);
    }
  }
}

void Q5KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ5_K);
  if (r >= n_out / kRows * kRows) {
    std::memcpy(row, panels + r * row_bytes, row_bytes);
    return;
  }
  const int i = static_cast<int>(r % kRows);
  const uint8_t* start = panels + (r - i) * row_bytes;
  for (int64_t b = 0; b < n_super; ++b) {
    const uint8_t* group = start + b * kGroupBytes;
    auto* blk = reinterpret_cast<BlockQ5_K*>(row) + b;
    std::memcpy(&blk->d, group + 2 * i, 2);
    std::memcpy(&blk->dmin, group + 2 * (kRows + i), 2);
    uint8_t sc[8], m[8];
    for (int s = 0; s < 8; ++s) {
      const int k = ByteOf(i, s % 4);
      const int half = s / 4;
      const uint8_t high = group[kHighOffset + k];
      sc[s] = static_cast<uint8_t>(((group[kNibOffset + k] >> (4 * half)) & 0x0f) |
                                   ((high >> (2 * half)) & 3) << 4);
      m[s] = static_cast<uint8_t>(((group[kNibOffset + 32 + k] >> (4 * half)) & 0x0f) |
                                  ((high >> (4 + 2 * half)) & 3) << 4);
    }
    PackK4(sc, m, blk->scales);
    std::memset(blk->qh, 0, sizeof blk->qh);
    for (int j = 0; j < 4; ++j) {
      for (int h = 0; h < 2; ++h) {
        uint8_t lo[4][32], hi[4][32];
        DecodeHalf(group + kQuantOffset + (2 * j + h) * kHalfBytes, lo, hi);
        for (int k = 0; k < 4; ++k) {
          const int l = 4 * h + k;
          for (int mm = 0; mm < 4; ++mm) {
            const uint8_t vlo = lo[k][4 * i + mm], vhi = hi[k][4 * i + mm];
            blk->qs[32 * j + 4 * l + mm] = static_cast<uint8_t>((vlo & 0x0f) | (vhi & 0x0f) << 4);
            blk->qh[4 * l + mm] |=
                static_cast<uint8_t>((vlo >> 4) << (2 * j) | (vhi >> 4) << (2 * j + 1));
          }
        }
      }
    }
  }
}

}  // namespace swarm::kernels::cpu
