// Bit-compatibility with llama.cpp: hashes of llama.cpp's own quantize_row_*_ref output (IQ4_NL:
// quantize_iq4_nl without importance weights, as llama-quantize writes it) and the
// bits of its scalar ggml_vec_dot_*_generic result, recorded by tools/llama_cpp_golden.cpp from the
// libggml of llama.cpp as shipped prebuilt (linux-x64) in npm's
// @node-llama-cpp/linux-x64 3.22.1, on the portable inputs of portable_inputs.h.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/quant_reference.h"
#include "portable_inputs.h"

namespace swarm::kernels {
namespace {

struct Golden {
  GgmlType type;
  int input_kind;
  uint64_t bytes_hash;  // FNV-1a 64 of QuantizeRow's output
  uint32_t dot_bits;    // VecDotQuantizedReference against quantized kNormal activations
};

constexpr Golden kGolden[] = {
    // clang-format off
    {GgmlType::kQ8_0, 0, 0xc31d386153aadb1full, 0xc0758f3eu},
    {GgmlType::kQ8_0, 1, 0x14f8495c4f46fae4ull, 0xbe5129c6u},
    {GgmlType::kQ8_0, 2, 0x739a3ef4afba1734ull, 0x4211624du},
    {GgmlType::kQ8_0, 3, 0xe2b5e3333a6757d4ull, 0xc1e7e629u},
    {GgmlType::kQ4_0, 0, 0x3b2ab88ba0dcf1abull, 0x409d06e0u},
    {GgmlType::kQ4_0, 1, 0x452ad9403d830048ull, 0xbe6409dau},
    {GgmlType::kQ4_0, 2, 0xaf67da4c136518d8ull, 0x421553c1u},
    {GgmlType::kQ4_0, 3, 0x5d0ccf466aea9a26ull, 0xc286e085u},
    {GgmlType::kQ4_K, 0, 0x0f22a02075f634eeull, 0xc0568408u},
    {GgmlType::kQ4_K, 1, 0x30269892ff972000ull, 0xbe280070u},
    {GgmlType::kQ4_K, 2, 0xaeda6553bdb97850ull, 0x421035f0u},
    {GgmlType::kQ4_K, 3, 0xbd345332efea8140ull, 0xc168d140u},
    {GgmlType::kQ6_K, 0, 0x557743f50bedb3fbull, 0xc0613f48u},
    {GgmlType::kQ6_K, 1, 0x5b4956801ff47b7dull, 0xbe50f74eu},
    {GgmlType::kQ6_K, 2, 0xbda1056e37556c22ull, 0x42130576u},
    {GgmlType::kQ6_K, 3, 0xfba1511e6086a34full, 0xc1b88bfbu},
    {GgmlType::kQ8_K, 0, 0xfd683d1d74ffc3a1ull, 0x00000000u},
    {GgmlType::kQ8_K, 1, 0x30433469f580cd44ull, 0x00000000u},
    {GgmlType::kQ8_K, 2, 0xd3cba008064b3d58ull, 0x00000000u},
    {GgmlType::kQ8_K, 3, 0x36bedb37f1b1fb9bull, 0x00000000u},
    {GgmlType::kQ2_K, 0, 0x9572e1699a57fbd7ull, 0xc18a1c64u},
    {GgmlType::kQ2_K, 1, 0x0d945012a1c1629full, 0xbe20de36u},
    {GgmlType::kQ2_K, 2, 0xa0847ddc94b3ec1cull, 0x41caaf99u},
    {GgmlType::kQ2_K, 3, 0xaeafd8ffc5df94bfull, 0xc1be3aacu},
    {GgmlType::kQ3_K, 0, 0x20afd8ec77ec39efull, 0x3eeaf3b0u},
    {GgmlType::kQ3_K, 1, 0xec4d60367fc1546aull, 0xbe470029u},
    {GgmlType::kQ3_K, 2, 0xf6dbb1aeb76cdbf5ull, 0x421c5cf8u},
    {GgmlType::kQ3_K, 3, 0x7b6838990abe7ed7ull, 0xc24ffbeeu},
    {GgmlType::kIQ4_XS, 0, 0x821cc734f2c4e976ull, 0xc0298c70u},
    {GgmlType::kIQ4_XS, 1, 0x95c86031fec6395aull, 0xbda97db1u},
    {GgmlType::kIQ4_XS, 2, 0x8a18258cf5f57810ull, 0x4208d042u},
    {GgmlType::kIQ4_XS, 3, 0xe643a2997b538e82ull, 0xc286dff3u},
    {GgmlType::kQ4_1, 0, 0xd4bb59c1c5f97c85ull, 0x40b94197u},
    {GgmlType::kQ4_1, 1, 0x48ea702fb060d07eull, 0xbe6d1438u},
    {GgmlType::kQ4_1, 2, 0x0545c2d052b86931ull, 0x4212be9au},
    {GgmlType::kQ4_1, 3, 0x5ec6acfd4f1de85dull, 0xc1bdce90u},
    {GgmlType::kQ5_0, 0, 0x133211de84fb618bull, 0xc08e9a59u},
    {GgmlType::kQ5_0, 1, 0x51bcdd4316a50e73ull, 0xbe84ea96u},
    {GgmlType::kQ5_0, 2, 0x504f9979324875deull, 0x42189b46u},
    {GgmlType::kQ5_0, 3, 0x36aa28eae91c77aeull, 0xc211b25au},
    {GgmlType::kQ5_K, 0, 0xa2166a0b12fe6b1dull, 0xc00c08e0u},
    {GgmlType::kQ5_K, 1, 0xccfc797e34176b2cull, 0xbe91c6a0u},
    {GgmlType::kQ5_K, 2, 0xe7149e1eb49ec7fbull, 0x42154943u},
    {GgmlType::kQ5_K, 3, 0xb48da17f1e92037full, 0xc1e9ec14u},
    {GgmlType::kQ8_1, 0, 0x336b48360fa1d56bull, 0x00000000u},
    {GgmlType::kQ8_1, 1, 0x431c0fc21d26c5a5ull, 0x00000000u},
    {GgmlType::kQ8_1, 2, 0x26b0a87e1be7c5b5ull, 0x00000000u},
    {GgmlType::kQ8_1, 3, 0x0d903c196ebb969eull, 0x00000000u},
    {GgmlType::kQ5_1, 0, 0x225e6a0de40b1f71ull, 0xbfeacaf0u},
    {GgmlType::kQ5_1, 1, 0x9c3a5a246937e579ull, 0xbe95ea8cu},
    {GgmlType::kQ5_1, 2, 0x605ec9e35a82ee6cull, 0x420fa5a0u},
    {GgmlType::kQ5_1, 3, 0x932401922739ec01ull, 0xc1e49beau},
    {GgmlType::kIQ4_NL, 0, 0x7790fb11412c3512ull, 0xc091b54eu},
    {GgmlType::kIQ4_NL, 1, 0x615ff4899654eeedull, 0xbe4cfc25u},
    {GgmlType::kIQ4_NL, 2, 0x9627dfebae87cb1eull, 0x4207a6f1u},
    {GgmlType::kIQ4_NL, 3, 0x3f63cad5871cb32bull, 0xc2a5206du},
    // clang-format on
};

TEST(LlamaCppGoldenTest, QuantizeAndVecDotAreBitIdentical) {
  constexpr int64_t kN = 4096;
  for (const Golden& g : kGolden) {
    SCOPED_TRACE(::testing::Message() << GgmlTypeName(g.type) << " input kind " << g.input_kind);
    const std::vector<float> x =
        testing::MakeInput(static_cast<testing::InputKind>(g.input_kind), kN, 1000 + g.input_kind);
    std::vector<uint8_t> q(RowBytes(g.type, kN).value());
    QuantizeRow(g.type, x.data(), q.data(), kN);
    EXPECT_EQ(testing::Fnv1a64(q.data(), q.size()), g.bytes_hash);
    if (g.type == GgmlType::kQ8_K || g.type == GgmlType::kQ8_1) continue;  // activations only

    const std::vector<float> a =
        testing::MakeInput(testing::InputKind::kNormal, kN, 2000 + g.input_kind);
    const GgmlType act_type = VecDotType(g.type);
    std::vector<uint8_t> aq(RowBytes(act_type, kN).value());
    QuantizeRow(act_type, a.data(), aq.data(), kN);
    const float dot = VecDotQuantizedReference(g.type, q.data(), aq.data(), kN);
    uint32_t dot_bits;
    std::memcpy(&dot_bits, &dot, sizeof dot_bits);
    EXPECT_EQ(dot_bits, g.dot_bits) << "dot " << dot;
  }
}

}  // namespace
}  // namespace swarm::kernels
