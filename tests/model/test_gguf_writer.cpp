// GgufWriter round trips through GgufFile: every value type, nested arrays, alignment, streamed
// tensor data in arbitrary chunks, and the writer's own argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "gguf_test_util.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"

namespace swarm::model {
namespace {

using kernels::GgmlType;
using test_support::ReadBytes;
using testing::Bytes;
using testing::ScratchDir;

GgufValue Scalar(
    GgufValueType type,
    std::variant<uint64_t, int64_t, double, bool, std::string_view, GgufValue::Array> v) {
  GgufValue g;
  g.type = type;
  g.value = std::move(v);
  return g;
}

TEST(GgufWriter, RoundTripsEveryValueType) {
  ScratchDir dir;
  const std::string path = dir.File("values.gguf");
  GgufWriter w;
  w.SetUint8("t.u8", 200);
  w.SetInt8("t.i8", -100);
  w.SetUint16("t.u16", 60000);
  w.SetInt16("t.i16", -30000);
  w.SetUint32("t.u32", 4000000000u);
  w.SetInt32("t.i32", -2000000000);
  w.SetUint64("t.u64", 18000000000000000000ull);
  w.SetInt64("t.i64", -9000000000000000000ll);
  w.SetFloat32("t.f32", 1.5f);
  w.SetFloat64("t.f64", 3.141592653589793);
  w.SetBool("t.true", true);
  w.SetBool("t.false", false);
  w.SetString("t.str", "hello \xE2\x96\x81world");
  w.SetString("t.empty", "");
  const std::vector<std::string> strings = {"a", "", "ccc", std::string("nul\0byte", 8)};
  w.SetStringArray("t.strs", strings);
  const std::vector<float> floats = {0.5f, -2.0f, 1e-7f};
  w.SetFloat32Array("t.f32s", floats);
  const std::vector<int32_t> ints = {1, -2, 3};
  w.SetInt32Array("t.i32s", ints);
  w.SetInt32Array("t.empty_array", {});
  // A nested array: [[1, 2], [3]] of u16 via SetValue, and an array of bools.
  GgufValue::Array inner1{
      GgufValueType::kUint16,
      {Scalar(GgufValueType::kUint16, uint64_t{1}), Scalar(GgufValueType::kUint16, uint64_t{2})}};
  GgufValue::Array inner2{GgufValueType::kUint16, {Scalar(GgufValueType::kUint16, uint64_t{3})}};
  GgufValue::Array outer{
      GgufValueType::kArray,
      {Scalar(GgufValueType::kArray, inner1), Scalar(GgufValueType::kArray, inner2)}};
  ASSERT_TRUE(w.SetValue("t.nested", Scalar(GgufValueType::kArray, outer)).ok());
  GgufValue::Array bools{GgufValueType::kBool,
                         {Scalar(GgufValueType::kBool, true), Scalar(GgufValueType::kBool, false)}};
  ASSERT_TRUE(w.SetValue("t.bools", Scalar(GgufValueType::kArray, bools)).ok());
  // Replacing keeps the position and changes the value.
  w.SetUint32("t.replaced", 1);
  w.SetUint32("t.replaced", 2);
  ASSERT_TRUE(w.Begin(path).ok());
  ASSERT_TRUE(w.Finish().ok());

  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 21u);
  EXPECT_EQ(f.metadata()[0].first, "t.u8");
  EXPECT_EQ(f.Find("t.u8")->type, GgufValueType::kUint8);
  EXPECT_EQ(*f.GetUint("t.u8"), 200u);
  EXPECT_EQ(f.Find("t.i8")->type, GgufValueType::kInt8);
  EXPECT_EQ(*f.GetInt("t.i8"), -100);
  EXPECT_EQ(*f.GetUint("t.u16"), 60000u);
  EXPECT_EQ(*f.GetInt("t.i16"), -30000);
  EXPECT_EQ(*f.GetUint("t.u32"), 4000000000u);
  EXPECT_EQ(*f.GetInt("t.i32"), -2000000000);
  EXPECT_EQ(*f.GetUint("t.u64"), 18000000000000000000ull);
  EXPECT_EQ(f.GetInt("t.u64").status().code(), absl::StatusCode::kInvalidArgument);  // > int64
  EXPECT_EQ(*f.GetInt("t.i64"), -9000000000000000000ll);
  EXPECT_EQ(f.GetUint("t.i8").status().code(), absl::StatusCode::kInvalidArgument);  // negative
  EXPECT_EQ(f.Find("t.f32")->type, GgufValueType::kFloat32);
  EXPECT_EQ(*f.GetFloat("t.f32"), 1.5);
  EXPECT_EQ(*f.GetFloat("t.f64"), 3.141592653589793);
  EXPECT_TRUE(*f.GetBool("t.true"));
  EXPECT_FALSE(*f.GetBool("t.false"));
  EXPECT_EQ(*f.GetString("t.str"), "hello \xE2\x96\x81world");
  EXPECT_EQ(*f.GetString("t.empty"), "");
  auto strs = f.GetStringArray("t.strs");
  ASSERT_TRUE(strs.ok());
  ASSERT_EQ(strs->size(), 4u);
  for (size_t i = 0; i < strings.size(); ++i) EXPECT_EQ((*strs)[i], strings[i]);
  EXPECT_EQ(*f.GetFloatArray("t.f32s"), floats);
  EXPECT_EQ(*f.GetIntArray("t.i32s"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_TRUE(f.GetIntArray("t.empty_array")->empty());
  EXPECT_EQ(*f.GetUint("t.replaced"), 2u);

  const GgufValue* nested = f.Find("t.nested");
  ASSERT_NE(nested, nullptr);
  const auto& arr = std::get<GgufValue::Array>(nested->value);
  ASSERT_EQ(arr.element_type, GgufValueType::kArray);
  ASSERT_EQ(arr.elements.size(), 2u);
  const auto& a0 = std::get<GgufValue::Array>(arr.elements[0].value);
  const auto& a1 = std::get<GgufValue::Array>(arr.elements[1].value);
  EXPECT_EQ(a0.element_type, GgufValueType::kUint16);
  ASSERT_EQ(a0.elements.size(), 2u);
  EXPECT_EQ(std::get<uint64_t>(a0.elements[1].value), 2u);
  ASSERT_EQ(a1.elements.size(), 1u);
  EXPECT_EQ(std::get<uint64_t>(a1.elements[0].value), 3u);
  const auto& b = std::get<GgufValue::Array>(f.Find("t.bools")->value);
  EXPECT_EQ(b.element_type, GgufValueType::kBool);
  EXPECT_TRUE(std::get<bool>(b.elements[0].value));

  // Copying every value of the file with SetValue reproduces the file byte for byte.
  const std::string copy = dir.File("copy.gguf");
  GgufWriter w2;
  for (const auto& [k, v] : f.metadata()) ASSERT_TRUE(w2.SetValue(k, v).ok()) << k;
  ASSERT_TRUE(w2.Begin(copy).ok());
  ASSERT_TRUE(w2.Finish().ok());
  EXPECT_EQ(ReadBytes(copy), ReadBytes(path));
}

TEST(GgufWriter, StreamsTensorsInAnyChunking) {
  ScratchDir dir;
  // Tensors of sizes that are not multiples of the alignment, so padding is exercised.
  struct Spec {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
  };
  const std::vector<Spec> specs = {{"a", GgmlType::kF32, {3}},
                                   {"b", GgmlType::kF16, {5, 3}},
                                   {"c", GgmlType::kQ8_0, {64, 2}},
                                   {"d", GgmlType::kQ4_K, {256, 1, 1, 2}},
                                   {"e", GgmlType::kBF16, {7, 1, 3}}};
  std::vector<std::vector<uint8_t>> payloads;
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{100000}}) {
    for (uint32_t alignment : {32u, 64u, 1u}) {
      const std::string path = dir.File("t.gguf");
      GgufWriter w;
      w.SetString("general.architecture", "test");
      ASSERT_TRUE(w.SetAlignment(alignment).ok());
      for (const Spec& s : specs) ASSERT_TRUE(w.AddTensor(s.name, s.type, s.ne).ok()) << s.name;
      std::vector<uint8_t> all;
      payloads.clear();
      for (size_t i = 0; i < specs.size(); ++i) {
        std::vector<uint8_t> p(w.tensor_bytes(i));
        for (size_t j = 0; j < p.size(); ++j) p[j] = static_cast<uint8_t>(i * 31 + j * 7 + 1);
        all.insert(all.end(), p.begin(), p.end());
        payloads.push_back(std::move(p));
      }
      ASSERT_TRUE(w.Begin(path).ok());
      for (size_t pos = 0; pos < all.size(); pos += chunk) {
        const size_t n = std::min(chunk, all.size() - pos);
        ASSERT_TRUE(w.WriteTensorData({all.data() + pos, n}).ok());
      }
      ASSERT_TRUE(w.Finish().ok());
      EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

      auto file = GgufFile::Open(path);
      ASSERT_TRUE(file.ok()) << file.status();
      EXPECT_EQ((*file)->alignment(), alignment);
      EXPECT_EQ((*file)->data_offset() % alignment, 0u);
      EXPECT_EQ((*file)->file_size() % alignment, 0u);
      ASSERT_EQ((*file)->tensors().size(), specs.size());
      for (size_t i = 0; i < specs.size(); ++i) {
        const GgufTensorInfo& t = (*file)->tensors()[i];
        EXPECT_EQ(t.name, specs[i].name);
        EXPECT_EQ(t.type, specs[i].type);
        EXPECT_EQ(t.n_dims, specs[i].ne.size());
        for (size_t d = 0; d < specs[i].ne.size(); ++d) EXPECT_EQ(t.ne[d], specs[i].ne[d]);
        EXPECT_EQ(t.offset % alignment, 0u);
        auto data = (*file)->TensorData(t);
        EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), payloads[i]) << t.name;
      }
    }
  }
  // Exact sizes as ggml computes them.
  EXPECT_EQ(payloads[0].size(), 12u);
  EXPECT_EQ(payloads[1].size(), 30u);
  EXPECT_EQ(payloads[2].size(), 2u * 2u * 34u);
  EXPECT_EQ(payloads[3].size(), 2u * 144u);
  EXPECT_EQ(payloads[4].size(), 42u);
}

TEST(GgufWriter, ExactLayoutOfASmallFile) {
  // One u32 key and one 1-element f32 tensor, built by hand the way the spec lays it out.
  ScratchDir dir;
  const std::string path = dir.File("small.gguf");
  GgufWriter w;
  w.SetUint32("k", 7);
  ASSERT_TRUE(w.AddTensor("x", GgmlType::kF32, {1}).ok());
  ASSERT_TRUE(w.Begin(path).ok());
  const float one = 1.0f;
  ASSERT_TRUE(w.WriteTensorData({reinterpret_cast<const uint8_t*>(&one), 4}).ok());
  ASSERT_TRUE(w.Finish().ok());
  Bytes expected;
  expected.Header(1, 1).Str("k").U32(4).U32(7);
  expected.TensorInfo("x", {1}, 0, 0).PadTo(32).F32(1.0f).PadTo(32);
  EXPECT_EQ(ReadBytes(path), expected.data());
}

TEST(GgufWriter, RejectsBadArguments) {
  GgufWriter w;
  EXPECT_FALSE(w.AddTensor("", GgmlType::kF32, {4}).ok());
  EXPECT_FALSE(w.AddTensor(std::string(64, 'x'), GgmlType::kF32, {4}).ok());
  EXPECT_FALSE(w.AddTensor("t", GgmlType::kF32, {}).ok());
  EXPECT_FALSE(w.AddTensor("t", GgmlType::kF32, {1, 1, 1, 1, 1}).ok());
  EXPECT_FALSE(w.AddTensor("t", GgmlType::kF32, {0}).ok());
  EXPECT_FALSE(w.AddTensor("t", GgmlType::kF32, {-4}).ok());
  EXPECT_FALSE(w.AddTensor("t", GgmlType::kQ8_0, {33}).ok());  // not a multiple of 32
  EXPECT_FALSE(w.AddTensor("t", GgmlType::kF32, {1 << 30, 1 << 30, 1 << 30}).ok());
  EXPECT_TRUE(w.AddTensor("t", GgmlType::kF32, {4}).ok());
  EXPECT_FALSE(w.AddTensor("t", GgmlType::kF32, {4}).ok());  // duplicate
  EXPECT_FALSE(w.SetAlignment(0).ok());
  EXPECT_FALSE(w.SetAlignment(48).ok());
  // Values inconsistent with their declared type.
  EXPECT_FALSE(w.SetValue("k", Scalar(GgufValueType::kUint8, uint64_t{256})).ok());
  EXPECT_FALSE(w.SetValue("k", Scalar(GgufValueType::kInt8, int64_t{-129})).ok());
  EXPECT_FALSE(w.SetValue("k", Scalar(GgufValueType::kUint32, int64_t{-1})).ok());
  EXPECT_FALSE(w.SetValue("k", Scalar(GgufValueType::kString, uint64_t{1})).ok());
  GgufValue::Array mixed{GgufValueType::kUint8, {Scalar(GgufValueType::kInt8, int64_t{1})}};
  EXPECT_FALSE(w.SetValue("k", Scalar(GgufValueType::kArray, mixed)).ok());
  EXPECT_FALSE(w.HasKey("k"));
}

TEST(GgufWriter, DataMustMatchDeclaredSizes) {
  ScratchDir dir;
  {
    GgufWriter w;
    ASSERT_TRUE(w.AddTensor("t", GgmlType::kF32, {4}).ok());
    ASSERT_TRUE(w.Begin(dir.File("short.gguf")).ok());
    std::vector<uint8_t> bytes(8);
    ASSERT_TRUE(w.WriteTensorData(bytes).ok());
    EXPECT_FALSE(w.Finish().ok());  // 8 of 16 bytes
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("short.gguf")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("short.gguf.tmp")));
  {
    GgufWriter w;
    ASSERT_TRUE(w.AddTensor("t", GgmlType::kF32, {4}).ok());
    ASSERT_TRUE(w.Begin(dir.File("long.gguf")).ok());
    std::vector<uint8_t> bytes(20);
    EXPECT_FALSE(w.WriteTensorData(bytes).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("long.gguf")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("long.gguf.tmp")));
  {
    GgufWriter w;
    EXPECT_FALSE(w.Begin(dir.File("no/such/dir/x.gguf")).ok());
  }
}

}  // namespace
}  // namespace swarm::model
