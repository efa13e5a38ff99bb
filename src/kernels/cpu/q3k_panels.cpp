#include "kernels/cpu/q3k_panels.h"

#include <cstddef>
#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kRows = static_cast<int>(kQ3KPanelRows);
constexpr size_t kGroupBytes = kRows * sizeof(BlockQ3_K);
constexpr size_t kScalesOffset = kRows * sizeof(uint16_t);
constexpr size_t kQuantsOffset = kScalesOffset + 3 * 32;
static_assert(kQuantsOffset + 8 * 3 * 32 == kGroupBytes);

// One super-block of one row, unpacked: its fp16 d, 6-bit scales u (value u - 32) and 3-bit
// quants w (value w - 4).
struct Unpacked {
  uint16_t d;
  uint8_t u[16];
  uint8_t w[kQK_K];
};

Unpacked FromGguf(const BlockQ3_K& b) {
  Unpacked o;
  o.d = b.d;
  for (int s = 0; s < 16; ++s) {
    const int low = (s < 8 ? b.scales[s] : b.scales[s - 8] >> 4) & 15;
    const int high = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    o.u[s] = static_cast<uint8_t>(low | high << 4);
  }
  for (int p = 0; p < kQK_K; ++p) {
    const int h = p / 128, k = p % 128 / 32, l = p % 32;
    const int low = (b.qs[32 * h + l] >> (2 * k)) & 3;
    const int high = (b.hmask[l] >> (4 * h + k)) & 1;
    o.w[p] = static_cast<uint8_t>(low | high << 2);
  }
  return o;
}

BlockQ3_K ToGguf(const Unpacked& o) {
  BlockQ3_K b{};
  b.d = o.d;
  for (int s = 0; s < 16; ++s) {
    if (s < 8) {
      b.scales[s] = static_cast<uint8_t>(b.scales[s] | (o.u[s] & 15));
    } else {
      b.scales[s - 8] = static_cast<uint8_t>(b.scales[s - 8] | (o.u[s] & 15) << 4);
    }
    b.scales[8 + s % 4] =
        static_cast<uint8_t>(b.scales[8 + s % 4] | (o.u[s] >> 4) << (2 * (s / 4)));
  }
  for (int p = 0; p < kQK_K; ++p) {
    const int h = p / 128, k = p % 128 / 32, l = p % 32;
    b.qs[32 * h + l] = static_cast<uint8_t>(b.qs[32 * h + l] | (o.w[p] & 3) << (2 * k));
    b.hmask[l] = static_cast<uint8_t>(b.hmask[l] | (o.w[p] >> 2) << (4 * h + k));
  }
  return b;
}

uint16_t LoadWord(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void StoreWord(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Offset in a group of scale word v of row i, half h.
size_t ScaleWord(int v, int i, int h) { return kScalesOffset + 32 * v + 4 * i + 2 * h; }
// Offset of byte k of piece p (A, B, C) of pair j of row i.
size_t QuantByte(int j, int p, int i, int k) { return kQuantsOffset + 96 * j + 32 * p + 4 * i + k; }
// Position in the super-block of byte k of quant group e of pair j.
int Position(int j, int e, int k) { return 32 * j + 2 * e + (k & 1) + 16 * (k >> 1); }

void ToGroup(const Unpacked& o, uint8_t* group, int i) {
  StoreWord(group + 2 * i, o.d);
  uint16_t words[3][2] = {};
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 8; ++j) {
      const unsigned t = o.u[2 * j + h] ^ 32u;  // (u - 32) mod 64
      if (j < 6) {
        words[j / 2][h] = static_cast<uint16_t>(words[j / 2][h] | t << (j % 2 == 0 ? 10 : 4));
      } else {
        words[j - 6][h] = static_cast<uint16_t>(words[j - 6][h] | (t & 15));
        words[2][h] = static_cast<uint16_t>(words[2][h] | (t >> 4) << (2 * (j - 6)));
      }
    }
    for (int v = 0; v < 3; ++v) StoreWord(group + ScaleWord(v, i, h), words[v][h]);
  }
  for (int j = 0; j < 8; ++j) {
    for (int k = 0; k < 4; ++k) {
      unsigned w[8];
      for (int e = 0; e < 8; ++e) w[e] = o.w[Position(j, e, k)];
      const unsigned a = w[0] | w[1] << 3 | (w[6] & 3) << 6;
      const unsigned b = w[2] | w[3] << 3 | (w[7] & 3) << 6;
      const unsigned c = w[4] | w[5] << 3 | (w[6] >> 2) << 6 | (w[7] >> 2) << 7;
      group[QuantByte(j, 0, i, k)] = static_cast<uint8_t>(a);
      group[QuantByte(j, 1, i, k)] = static_cast<uint8_t>(b);
      group[QuantByte(j, 2, i, k)] = static_cast<uint8_t>(c);
    }
  }
}

Unpacked FromGroup(const uint8_t* group, int i) {
  Unpacked o;
  o.d = LoadWord(group + 2 * i);
  for (int h = 0; h < 2; ++h) {
    uint16_t words[3];
    for (int v = 0; v < 3; ++v) words[v] = LoadWord(group + ScaleWord(v, i, h));
    for (int j = 0; j < 8; ++j) {
      unsigned t;
      if (j < 6) {
        t = (words[j / 2] >> (j % 2 == 0 ? 10 : 4)) & 63u;
      } else {
        t = (words[j - 6] & 15u) | ((words[2] >> (2 * (j - 6))) & 3u) << 4;
      }
      o.u[2 * j + h] = static_cast<uint8_t>(t ^ 32u);
    }
  }
  for (int j = 0; j < 8; ++j) {
    for (int k = 0; k < 4; ++k) {
      const unsigned a = group[QuantByte(j, 0, i, k)];
      const unsigned b = group[QuantByte(j, 1, i, k)];
      const unsigned c = group[QuantByte(j, 2, i, k)];
      const unsigned w[8] = {a & 7,
                             a >> 3 & 7,
                             b & 7,
                             b >> 3 & 7,
                             c & 7,
                             c >> 3 & 7,
                             (a >> 6) | (c >> 6 & 1) << 2,
                             (b >> 6) | (c >> 7) << 2};
      for (int e = 0; e < 8; ++e) o.w[Position(j, e, k)] = static_cast<uint8_t>(w[e]);
    }
  }
  return o;
}

}  // namespace

void Q3KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ3_K);
  for (int64_t g = group_begin; g < group_end; ++g) {
    const size_t start = static_cast<size_t>(g) * kRows * row_bytes;
    for (int64_t b = 0; b < n_super; ++b) {
      for (int i = 0; i < kRows; ++i) {
        BlockQ3_K block;
        std::memcpy(&block, rows + start + i * row_bytes + b * sizeof(BlockQ3_K), sizeof block);
        ToGroup(FromGguf(block), panels + start + b * kGroupBytes, i);
      }
    }
  }
}

void Q3KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ3_K);
  if (r >= n_out / kRows * kRows) {
    std::memcpy(row, panels + r * row_bytes, row_bytes);
    return;
  }
  const int i = static_cast<int>(r % kRows);
  const uint8_t* start = panels + (r - i) * row_bytes;
  for (int64_t b = 0; b < n_super; ++b) {
    const BlockQ3_K block = ToGguf(FromGroup(start + b * kGroupBytes, i));
    std::memcpy(row + b * sizeof(BlockQ3_K), &block, sizeof block);
  }
}

}  // namespace swarm::kernels::cpu
