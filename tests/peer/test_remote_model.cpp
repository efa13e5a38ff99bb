// The pieces of a download by URL that need no server: the byte-range set the cache journal
// keeps, the GGUF header parsed from a prefix of the file, and the manifest's JSON and checks.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/gguf.h"
#include "peer/remote_model.h"
#include "peer/tensor_manifest.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::peer {
namespace {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

TEST(ByteRangesTest, AddMergesRemoveSplitsMissingIsTheComplement) {
  ByteRanges r;
  r.Add(10, 20);
  r.Add(30, 40);
  r.Add(20, 25);  // touches [10, 20): merged
  EXPECT_EQ(r.total(), 25u);
  EXPECT_TRUE(r.Covers(12, 25));
  EXPECT_FALSE(r.Covers(12, 26));
  EXPECT_EQ(r.Missing(0, 50), (Ranges{{0, 10}, {25, 30}, {40, 50}}));
  r.Remove(15, 35);
  EXPECT_EQ(r.Missing(0, 50), (Ranges{{0, 10}, {15, 35}, {40, 50}}));
  r.Add(0, 100);
  EXPECT_TRUE(r.Missing(0, 100).empty());
  r.Remove(0, 100);
  EXPECT_EQ(r.total(), 0u);
}

TEST(GgufHeaderPrefixTest, ShortPrefixAsksForMoreAndTheWholeHeaderParses) {
  const std::vector<uint8_t> bytes = test_support::ReadBytes(test_support::kSharedModel);
  ASSERT_FALSE(bytes.empty());
  auto full = model::GgufFile::FromBytes(bytes);
  ASSERT_TRUE(full.ok()) << full.status();
  const uint64_t header = (*full)->data_offset();
  auto short_prefix = model::GgufFile::FromHeader({bytes.data(), 64}, bytes.size(), "prefix");
  ASSERT_FALSE(short_prefix.ok());
  EXPECT_TRUE(model::GgufFile::IsNeedMoreBytes(short_prefix.status())) << short_prefix.status();
  auto parsed = model::GgufFile::FromHeader({bytes.data(), header}, bytes.size(), "prefix");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)->tensors().size(), (*full)->tensors().size());
  EXPECT_EQ((*parsed)->data_offset(), header);
  EXPECT_TRUE((*parsed)->TensorData((*parsed)->tensors().front()).empty());
  // Tensors placed past the claimed size are an error, not a request for more bytes.
  auto small = model::GgufFile::FromHeader({bytes.data(), header}, header + 16, "prefix");
  ASSERT_FALSE(small.ok());
  EXPECT_FALSE(model::GgufFile::IsNeedMoreBytes(small.status())) << small.status();
}

TEST(TensorManifestTest, RoundTripsThroughJsonAndNamesABadTensor) {
  auto m = TensorManifest::Compute(test_support::kSharedModel);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->tensors.empty());
  auto back = TensorManifest::FromJson(m->ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tensors, m->tensors);
  EXPECT_EQ(back->header_hash, m->header_hash);
  EXPECT_EQ(back->Digest(), m->Digest());
  const auto& [name, hash] = *m->tensors.begin();
  EXPECT_TRUE(m->Check(name, hash).ok());
  const absl::Status bad = m->Check(name, std::string(64, '0'));
  EXPECT_EQ(bad.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(bad.message()).find(name), std::string::npos);
  EXPECT_FALSE(TensorManifest::FromJson("{").ok());
  EXPECT_FALSE(TensorManifest::FromJson("{\"format\":\"swarm-manifest-v1\"}").ok());
  EXPECT_FALSE(TensorManifest::FromJson("[1,2]").ok());
}

}  // namespace
}  // namespace swarm::peer
