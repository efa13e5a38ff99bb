// GgufFile::Open on malformed input: every truncation of a valid file, and hand-crafted headers
// with absurd counts, lengths, types, shapes and offsets. Each must fail with a clear error and
// never read out of bounds (the suite runs under ASan).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "gguf_test_util.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"

namespace swarm::model {
namespace {

using kernels::GgmlType;
using test_support::ReadBytes;
using testing::Bytes;
using ::testing::HasSubstr;
using testing::ScratchDir;
using testing::WriteFile;

constexpr uint32_t kTypeU8 = 0, kTypeU32 = 4, kTypeBool = 7, kTypeString = 8, kTypeArray = 9;
constexpr uint32_t kF32 = 0, kQ8_0 = 8;

class GgufMalformed : public ::testing::Test {
 protected:
  absl::Status Open(const Bytes& bytes) {
    const std::string path = dir_.File("crafted.gguf");
    if (!WriteFile(path, bytes.data())) return absl::InternalError("cannot write test file");
    return GgufFile::Open(path).status();
  }
  ScratchDir dir_;
};

#define EXPECT_OPEN_FAILS(bytes, status_code, substring)          \
  do {                                                            \
    absl::Status s_ = Open(bytes);                                \
    EXPECT_EQ(s_.code(), absl::StatusCode::status_code) << s_;    \
    EXPECT_THAT(std::string(s_.message()), HasSubstr(substring)); \
  } while (0)

// A small valid model-like file: metadata of several types and three tensors.
void WriteValidFile(const std::string& path) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.block_count", 1);
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "a"};
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  const std::vector<int32_t> types = {2, 3, 3, 1};
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  w.SetBool("b", true);
  ASSERT_TRUE(w.AddTensor("token_embd.weight", GgmlType::kF32, {8, 4}).ok());
  ASSERT_TRUE(w.AddTensor("blk.0.attn_q.weight", GgmlType::kQ8_0, {32, 2}).ok());
  ASSERT_TRUE(w.AddTensor("output_norm.weight", GgmlType::kF16, {8}).ok());
  ASSERT_TRUE(w.Begin(path).ok());
  std::vector<uint8_t> data(w.tensor_bytes(0) + w.tensor_bytes(1) + w.tensor_bytes(2), 0x3c);
  ASSERT_TRUE(w.WriteTensorData(data).ok());
  ASSERT_TRUE(w.Finish().ok());
}

TEST_F(GgufMalformed, EveryTruncationFailsCleanly) {
  const std::string path = dir_.File("valid.gguf");
  ASSERT_NO_FATAL_FAILURE(WriteValidFile(path));
  const std::vector<uint8_t> bytes = ReadBytes(path);
  auto full = GgufFile::Open(path);
  ASSERT_TRUE(full.ok()) << full.status();
  const GgufTensorInfo& last = (*full)->tensors().back();
  const uint64_t data_end = (*full)->data_offset() + last.offset + last.size;
  ASSERT_LT(data_end, bytes.size() + 1);

  const std::string cut = dir_.File("cut.gguf");
  for (size_t n = 0; n < bytes.size(); ++n) {
    ASSERT_TRUE(WriteFile(cut, bytes.data(), n));
    auto file = GgufFile::Open(cut);
    if (n < data_end) {
      ASSERT_FALSE(file.ok()) << "truncated at " << n << " of " << bytes.size();
      EXPECT_TRUE(file.status().code() == absl::StatusCode::kDataLoss ||
                  file.status().code() == absl::StatusCode::kInvalidArgument)
          << file.status();
      EXPECT_THAT(std::string(file.status().message()), HasSubstr(cut));
    } else {
      // Only the trailing padding is missing: every tensor is still whole.
      EXPECT_TRUE(file.ok()) << file.status();
    }
  }
}

// Overwriting any single header byte with 0x00, 0x7f or 0xff must give a valid file or a clean
// error, never an out-of-bounds read (ASan checks that).
TEST_F(GgufMalformed, EveryHeaderByteCorruptionIsSafe) {
  const std::string path = dir_.File("valid.gguf");
  ASSERT_NO_FATAL_FAILURE(WriteValidFile(path));
  const std::vector<uint8_t> bytes = ReadBytes(path);
  auto full = GgufFile::Open(path);
  ASSERT_TRUE(full.ok()) << full.status();
  const std::string corrupt = dir_.File("corrupt.gguf");
  int failures = 0;
  for (size_t i = 0; i < (*full)->data_offset(); ++i) {
    for (uint8_t value : {0x00, 0x7f, 0xff}) {
      std::vector<uint8_t> copy = bytes;
      copy[i] = value;
      ASSERT_TRUE(WriteFile(corrupt, copy));
      auto file = GgufFile::Open(corrupt);
      if (!file.ok()) {
        ++failures;
        EXPECT_FALSE(file.status().message().empty());
      }
    }
  }
  EXPECT_GT(failures, 100);
}

TEST_F(GgufMalformed, WrongMagicAndVersion) {
  Bytes magic;
  magic.Raw("GGML", 4).U32(3).U64(0).U64(0);
  EXPECT_OPEN_FAILS(magic, kInvalidArgument, "not a GGUF file");
  for (uint32_t version : {0u, 1u, 4u, 0xffffffffu}) {
    Bytes b;
    b.Header(0, 0, version);
    EXPECT_OPEN_FAILS(b, kInvalidArgument, "unsupported GGUF version");
  }
  Bytes big_endian;
  big_endian.Header(0, 0, 0x03000000);
  EXPECT_OPEN_FAILS(big_endian, kInvalidArgument, "big-endian");
  Bytes v2;
  v2.Header(0, 1, 2).Str("k").U32(kTypeU32).U32(5);
  ASSERT_TRUE(Open(v2).ok()) << Open(v2);
  Bytes empty;
  EXPECT_OPEN_FAILS(empty, kDataLoss, "magic");
}

TEST_F(GgufMalformed, AbsurdCounts) {
  Bytes kv;
  kv.Header(0, uint64_t{1} << 63);
  EXPECT_OPEN_FAILS(kv, kInvalidArgument, "metadata count 9223372036854775808");
  Bytes kv_max;
  kv_max.Header(0, std::numeric_limits<uint64_t>::max());
  EXPECT_OPEN_FAILS(kv_max, kInvalidArgument, "metadata count");
  Bytes tensors;
  tensors.Header(uint64_t{1} << 63, 0);
  EXPECT_OPEN_FAILS(tensors, kInvalidArgument, "tensor count");
  // More key/value pairs than the remaining bytes could hold, even if each were minimal.
  Bytes more_kv;
  more_kv.Header(0, 10).Str("k").U32(kTypeU8).U8(1);
  EXPECT_OPEN_FAILS(more_kv, kInvalidArgument, "metadata count 10");
}

TEST_F(GgufMalformed, AbsurdStringLengths) {
  Bytes key;
  key.Header(0, 1).U64(std::numeric_limits<uint64_t>::max()).Raw("abc", 3).Zeros(16);
  EXPECT_OPEN_FAILS(key, kDataLoss, "metadata key 0");
  Bytes value;
  value.Header(0, 1).Str("general.name").U32(kTypeString);
  value.U64(std::numeric_limits<uint64_t>::max()).Raw("abc", 3);
  EXPECT_OPEN_FAILS(value, kDataLoss, "'general.name' string");
  Bytes past_end;
  past_end.Header(0, 1).Str("general.name").U32(kTypeString).U64(100).Raw("abc", 3);
  EXPECT_OPEN_FAILS(past_end, kDataLoss, "runs past the end");
  Bytes long_key;
  long_key.Header(0, 1).Str(std::string(70000, 'k')).U32(kTypeU8).U8(0);
  EXPECT_OPEN_FAILS(long_key, kInvalidArgument, "maximum 65535");
  Bytes empty_key;
  empty_key.Header(0, 1).Str("").U32(kTypeU8).U8(0);
  EXPECT_OPEN_FAILS(empty_key, kInvalidArgument, "is empty");
}

TEST_F(GgufMalformed, AbsurdArrays) {
  Bytes huge;
  huge.Header(0, 1).Str("a").U32(kTypeArray).U32(kTypeU8).U64(uint64_t{1} << 62).Zeros(64);
  EXPECT_OPEN_FAILS(huge, kInvalidArgument, "array of 4611686018427387904");
  Bytes strings;  // each string needs at least its 8-byte length
  strings.Header(0, 1).Str("a").U32(kTypeArray).U32(kTypeString).U64(10).Zeros(40);
  EXPECT_OPEN_FAILS(strings, kInvalidArgument, "cannot fit");
  Bytes element_type;
  element_type.Header(0, 1).Str("a").U32(kTypeArray).U32(13).U64(1).Zeros(8);
  EXPECT_OPEN_FAILS(element_type, kInvalidArgument, "unknown array element type 13");
  // Nested arrays: fine at depth 2, rejected when absurdly deep.
  Bytes nested;
  nested.Header(0, 1).Str("a").U32(kTypeArray).U32(kTypeArray).U64(1);
  nested.U32(kTypeU32).U64(2).U32(1).U32(2);
  ASSERT_TRUE(Open(nested).ok()) << Open(nested);
  Bytes deep;
  deep.Header(0, 1).Str("a").U32(kTypeArray);
  for (int i = 0; i < 100; ++i) deep.U32(kTypeArray).U64(1);
  deep.U32(kTypeU8).U64(1).U8(0);
  EXPECT_OPEN_FAILS(deep, kInvalidArgument, "nested deeper");
  // The total number of array elements is capped: this one fits in the file but not the cap.
  Bytes total;
  const uint64_t too_many = (uint64_t{1} << 24) + 1;
  total.Header(0, 1).Str("a").U32(kTypeArray).U32(kTypeU8).U64(too_many).Zeros(too_many);
  EXPECT_OPEN_FAILS(total, kInvalidArgument, "array elements in total");
}

TEST_F(GgufMalformed, BadValues) {
  Bytes type;
  type.Header(0, 1).Str("k").U32(13).U32(0);
  EXPECT_OPEN_FAILS(type, kInvalidArgument, "'k': unknown value type 13");
  Bytes type_max;
  type_max.Header(0, 1).Str("k").U32(0xffffffffu).U32(0);
  EXPECT_OPEN_FAILS(type_max, kInvalidArgument, "unknown value type 4294967295");
  Bytes boolean;
  boolean.Header(0, 1).Str("k").U32(kTypeBool).U8(2);
  EXPECT_OPEN_FAILS(boolean, kInvalidArgument, "bool value 2");
  Bytes dup;
  dup.Header(0, 2).Str("k").U32(kTypeU8).U8(1).Str("k").U32(kTypeU8).U8(2);
  EXPECT_OPEN_FAILS(dup, kInvalidArgument, "duplicate metadata key 'k'");
  Bytes binary_key;  // non-printable bytes are escaped in the message
  binary_key.Header(0, 2).Str("\x01z").U32(kTypeU8).U8(1).Str("\x01z").U32(kTypeU8).U8(2);
  EXPECT_OPEN_FAILS(binary_key, kInvalidArgument, "'\\x01z'");
}

TEST_F(GgufMalformed, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u, 0x80000000u}) {
    Bytes b;
    b.Header(0, 1).Str("general.alignment").U32(kTypeU32).U32(a);
    EXPECT_OPEN_FAILS(b, kInvalidArgument, "general.alignment");
  }
  Bytes str;
  str.Header(0, 1).Str("general.alignment").U32(kTypeString).Str("32");
  EXPECT_OPEN_FAILS(str, kInvalidArgument, "general.alignment has type string");
  // A valid non-default alignment moves the data section.
  Bytes ok;
  ok.Header(1, 1).Str("general.alignment").U32(kTypeU32).U32(64);
  ok.TensorInfo("t", {4}, kF32, 0).PadTo(64).Zeros(64);
  auto path = dir_.File("aligned.gguf");
  ASSERT_TRUE(WriteFile(path, ok.data()));
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->alignment(), 64u);
  EXPECT_EQ((*file)->data_offset(), 128u);
}

// A file with one tensor info `info` (built by the caller) and `data_bytes` of data.
Bytes OneTensor(const std::function<void(Bytes&)>& info, size_t data_bytes = 64) {
  Bytes b;
  b.Header(1, 0);
  info(b);
  b.PadTo(32).Zeros(data_bytes);
  return b;
}

TEST_F(GgufMalformed, BadTensorInfos) {
  auto valid = OneTensor([](Bytes& b) { b.TensorInfo("t", {4, 2}, kF32, 0); });
  ASSERT_TRUE(Open(valid).ok()) << Open(valid);

  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) {
                      b.TensorInfo("t", {1, 1, 1, 1, 1}, kF32, 0);
                    }),
                    kInvalidArgument, "tensor 't': n_dims 5");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {}, kF32, 0); }), kInvalidArgument,
                    "n_dims 0");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) {
                      b.TensorInfo("t", {4, 0}, kF32, 0);
                    }),
                    kInvalidArgument, "dimension 1 is 0");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) {
                      b.TensorInfo("t", {uint64_t(-4), 1}, kF32, 0);
                    }),
                    kInvalidArgument, "dimension 0 is -4");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) {
                      b.TensorInfo("t", {1ull << 32, 1ull << 32}, kF32, 0);
                    }),
                    kInvalidArgument, "element count overflows");
  // 2^62 f32 elements fit in int64 but their 2^64 bytes do not.
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {1ull << 62}, kF32, 0); }),
                    kInvalidArgument, "row size overflows");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) {
                      b.TensorInfo("t", {1ull << 31, 1ull << 31}, kF32, 0);
                    }),
                    kInvalidArgument, "byte size overflows");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {256}, 16, 0); }), kInvalidArgument,
                    "tensor 't': unsupported tensor type IQ2_XXS");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {4}, 1000, 0); }), kInvalidArgument,
                    "unsupported tensor type id 1000");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {33}, kQ8_0, 0); }),
                    kInvalidArgument, "not a multiple");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("", {4}, kF32, 0); }), kInvalidArgument,
                    "empty name");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo(std::string(65, 'n'), {4}, kF32, 0); }),
                    kInvalidArgument, "maximum 64");
}

TEST_F(GgufMalformed, BadTensorOffsets) {
  auto past_end = OneTensor([](Bytes& b) { b.TensorInfo("blk.0.attn_q.weight", {4}, kF32, 64); });
  const std::string size = std::to_string(past_end.size());
  EXPECT_OPEN_FAILS(past_end, kDataLoss,
                    "tensor 'blk.0.attn_q.weight': data [" + std::to_string(past_end.size()) +
                        ", " + std::to_string(past_end.size() + 16) + ") past end of file (size " +
                        size + ")");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {4}, kF32, 32); }, 40), kDataLoss,
                    "past end of file");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {4}, kF32, 0xffffffffffffffe0); }),
                    kDataLoss, "past end of file");
  EXPECT_OPEN_FAILS(OneTensor([](Bytes& b) { b.TensorInfo("t", {4}, kF32, 4); }), kInvalidArgument,
                    "not a multiple of the alignment 32");

  auto two = [](uint64_t offset_a, uint64_t offset_b, std::string name_b) {
    Bytes b;
    b.Header(2, 0);
    b.TensorInfo("a", {16}, kF32, offset_a).TensorInfo(name_b, {16}, kF32, offset_b);
    b.PadTo(32).Zeros(256);
    return b;
  };
  ASSERT_TRUE(Open(two(0, 64, "b")).ok());
  ASSERT_TRUE(Open(two(64, 0, "b")).ok());  // order of data need not follow the infos
  EXPECT_OPEN_FAILS(two(0, 32, "b"), kInvalidArgument, "overlaps tensor 'a'");
  EXPECT_OPEN_FAILS(two(32, 0, "b"), kInvalidArgument, "overlaps");
  EXPECT_OPEN_FAILS(two(0, 0, "b"), kInvalidArgument, "overlaps");
  EXPECT_OPEN_FAILS(two(0, 64, "a"), kInvalidArgument, "duplicate tensor name 'a'");

  // Data section start past the end of a file with tensors.
  Bytes no_data;
  no_data.Header(1, 0).TensorInfo("t", {4}, kF32, 0);
  EXPECT_OPEN_FAILS(no_data, kDataLoss, "truncated");
}

}  // namespace
}  // namespace swarm::model
