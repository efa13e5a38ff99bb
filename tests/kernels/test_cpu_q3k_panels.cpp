// The Q3_K row-panel layout (q3k_panels.h) holds each row's d, scales and 3-bit quants where its
// header says: decoded by the header's rules (written out again here), every super-block of every
// row of a group gives the values its GGUF block does. Round trips and products over the layout
// are in test_cpu_lane_layout (Q4KPanelsTest covers Q3_K with Q4_K and Q6_K).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "cpu_test_util.h"
#include "kernels/block_lowbit.h"
#include "kernels/cpu/row_panels.h"

namespace swarm::kernels::cpu {
namespace {

// Quant p (value w - 4, w in 0..7) and 6-bit scale s (value u - 32) of a GGUF block.
int GgufQuant(const BlockQ3_K& b, int p) {
  const int h = p / 128, k = p % 128 / 32, l = p % 32;
  return ((b.qs[32 * h + l] >> (2 * k)) & 3) | ((b.hmask[l] >> (4 * h + k)) & 1) << 2;
}
int GgufScale(const BlockQ3_K& b, int s) {
  const int low = (s < 8 ? b.scales[s] : b.scales[s - 8] >> 4) & 15;
  return (low | ((b.scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4) - 32;
}

uint16_t Word(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
// The 6-bit two's complement value of t.
int Signed6(unsigned t) { return static_cast<int>(t & 63) - (t & 32 ? 64 : 0); }

TEST(Q3KRowPanelsTest, HoldsEachRowsValuesWhereTheHeaderSays) {
  std::mt19937 rng(31);
  const int64_t n_in = 512, n_out = 16;
  const std::vector<uint8_t> rows = testing::RandomRows(rng, GgmlType::kQ3_K, n_in, n_out);
  std::vector<uint8_t> panels(rows.size());
  RowsToPanels(GgmlType::kQ3_K, rows.data(), panels.data(), n_in, n_out, 0, 1);
  const size_t row_bytes = 2 * sizeof(BlockQ3_K);
  for (int64_t g = 0; g < 2; ++g) {
    for (int sb = 0; sb < 2; ++sb) {
      const uint8_t* group = panels.data() + g * 8 * row_bytes + sb * 8 * sizeof(BlockQ3_K);
      for (int i = 0; i < 8; ++i) {
        BlockQ3_K b;
        std::memcpy(&b, rows.data() + (8 * g + i) * row_bytes + sb * sizeof(BlockQ3_K), sizeof b);
        EXPECT_EQ(Word(group + 2 * i), b.d);
        for (int h = 0; h < 2; ++h) {
          uint16_t s[3];
          for (int v = 0; v < 3; ++v) s[v] = Word(group + 16 + 32 * v + 4 * i + 2 * h);
          for (int j = 0; j < 8; ++j) {
            const unsigned t = j < 6 ? s[j / 2] >> (j % 2 == 0 ? 10 : 4)
                                     : (s[j - 6] & 15u) | ((s[2] >> (2 * (j - 6))) & 3u) << 4;
            EXPECT_EQ(Signed6(t), GgufScale(b, 2 * j + h)) << "row " << i << " pair " << j;
          }
        }
        for (int j = 0; j < 8; ++j) {
          const uint8_t* q = group + 16 + 96 + 96 * j;
          for (int k = 0; k < 4; ++k) {
            const unsigned a = q[4 * i + k], bb = q[32 + 4 * i + k], c = q[64 + 4 * i + k];
            const unsigned w[8] = {a & 7,
                                   a >> 3 & 7,
                                   bb & 7,
                                   bb >> 3 & 7,
                                   c & 7,
                                   c >> 3 & 7,
                                   (a >> 6) | (c >> 6 & 1) << 2,
                                   (bb >> 6) | (c >> 7) << 2};
            for (int e = 0; e < 8; ++e) {
              const int p = 32 * j + 2 * e + (k & 1) + 16 * (k >> 1);
              ASSERT_EQ(static_cast<int>(w[e]), GgufQuant(b, p))
                  << "row " << i << " position " << p;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace swarm::kernels::cpu
