// Untrusted vocabularies: GGUF files whose tokenizer.ggml.* metadata is inconsistent must give a
// clear error from Tokenizer::FromGguf (never a crash), and the odd-but-valid conventions real
// files use (-1 written as uint32 for "no token") must still load.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gguf_test_util.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/tokenizer.h"
#include "model/tokenizer_vocab.h"

namespace swarm::model {
namespace {

using ::testing::HasSubstr;

// A small, valid SPM vocabulary: <unk> <s> </s>, 256 byte tokens, "▁", "a", "▁a".
struct VocabMetadata {
  std::string model = "llama";
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;

  VocabMetadata() {
    tokens = {"<unk>", "<s>", "</s>"};
    types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char text[8];
      std::snprintf(text, sizeof(text), "<0x%02X>", b);
      tokens.push_back(text);
      types.push_back(6);
    }
    for (const char* t : {"\u2581", "a", "\u2581a"}) {
      tokens.push_back(t);
      types.push_back(1);
    }
    scores.assign(tokens.size(), 0.0f);
    scores.back() = 1.0f;
  }
};

class MalformedVocab : public ::testing::Test {
 protected:
  // Writes a metadata-only GGUF holding `vocab`, then lets `edit` change the writer's keys.
  absl::StatusOr<std::unique_ptr<Tokenizer>> Load(
      const VocabMetadata& vocab, const std::function<void(GgufWriter&)>& edit = {}) {
    GgufWriter writer;
    writer.SetString("general.architecture", "llama");
    writer.SetString("tokenizer.ggml.model", vocab.model);
    writer.SetStringArray("tokenizer.ggml.tokens", vocab.tokens);
    writer.SetFloat32Array("tokenizer.ggml.scores", vocab.scores);
    writer.SetInt32Array("tokenizer.ggml.token_type", vocab.types);
    writer.SetUint32("tokenizer.ggml.bos_token_id", 1);
    writer.SetUint32("tokenizer.ggml.eos_token_id", 2);
    writer.SetUint32("tokenizer.ggml.unknown_token_id", 0);
    if (edit) edit(writer);
    const std::string path = dir_.File("vocab" + std::to_string(count_++) + ".gguf");
    EXPECT_TRUE(writer.Begin(path).ok());
    EXPECT_TRUE(writer.Finish().ok());
    auto file = GgufFile::Open(path);
    EXPECT_TRUE(file.ok()) << file.status();
    if (!file.ok()) return file.status();
    return Tokenizer::FromGguf(**file);
  }

  // Expects a load error whose message contains `needle`.
  void ExpectError(const VocabMetadata& vocab, const std::function<void(GgufWriter&)>& edit,
                   const std::string& needle) {
    auto t = Load(vocab, edit);
    ASSERT_FALSE(t.ok()) << "loaded although malformed (expected: " << needle << ")";
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(needle));
  }

  testing::ScratchDir dir_;
  int count_ = 0;
};

TEST_F(MalformedVocab, ValidVocabularyLoads) {
  auto t = Load(VocabMetadata());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->n_vocab(), 262);
  EXPECT_THAT((*t)->Encode("a a", false, false), ::testing::ElementsAre(261, 261));
  EXPECT_EQ((*t)->Decode({1, 261, 261}), "a a");
}

TEST_F(MalformedVocab, MinusOneMeansNoToken) {
  // stories260K.gguf writes its missing padding/separator ids as 0xFFFFFFFF.
  auto t = Load(VocabMetadata(), [](GgufWriter& w) {
    w.SetUint32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
    w.SetInt32("tokenizer.ggml.eot_token_id", -1);
    w.SetUint32("tokenizer.ggml.bos_token_id", 0xFFFFFFFFu);
  });
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->bos_id(), -1);
  EXPECT_THAT((*t)->Encode("a", true, false), ::testing::ElementsAre(261));  // no BOS to add
}

TEST_F(MalformedVocab, MissingOrUnsupportedModel) {
  ExpectError(
      VocabMetadata(), [](GgufWriter& w) { w.RemoveKey("tokenizer.ggml.model"); },
      "has no tokenizer");
  VocabMetadata bert;
  bert.model = "bert";
  auto t = Load(bert);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("bert"));
  ExpectError(
      VocabMetadata(), [](GgufWriter& w) { w.SetUint32("tokenizer.ggml.model", 1); },
      "tokenizer.ggml.model");
}

TEST_F(MalformedVocab, Tokens) {
  ExpectError(
      VocabMetadata(), [](GgufWriter& w) { w.RemoveKey("tokenizer.ggml.tokens"); },
      "tokenizer.ggml.tokens");
  ExpectError(
      VocabMetadata(),
      [](GgufWriter& w) {
        w.SetInt32Array("tokenizer.ggml.tokens", std::vector<int32_t>{1, 2});
      },
      "tokenizer.ggml.tokens");
  VocabMetadata empty;
  empty.tokens.clear();
  empty.scores.clear();
  empty.types.clear();
  ExpectError(empty, {}, "empty");
}

TEST_F(MalformedVocab, ArrayLengthsMustMatch) {
  VocabMetadata short_scores;
  short_scores.scores.pop_back();
  ExpectError(short_scores, {}, "tokenizer.ggml.scores has 261 entries for 262 tokens");
  VocabMetadata long_types;
  long_types.types.push_back(1);
  ExpectError(long_types, {}, "tokenizer.ggml.token_type has 263 entries for 262 tokens");
  ExpectError(
      VocabMetadata(),
      [](GgufWriter& w) {
        w.SetStringArray("tokenizer.ggml.scores", std::vector<std::string>{"x"});
      },
      "tokenizer.ggml.scores");
}

TEST_F(MalformedVocab, ValuesMustBeSane) {
  VocabMetadata bad_type;
  bad_type.types[7] = 9;
  ExpectError(bad_type, {}, "tokenizer.ggml.token_type[7] = 9");
  VocabMetadata negative_type;
  negative_type.types[7] = -2;
  ExpectError(negative_type, {}, "tokenizer.ggml.token_type[7] = -2");
  VocabMetadata nan_score;
  nan_score.scores[260] = std::nanf("");
  ExpectError(nan_score, {}, "tokenizer.ggml.scores[260] is NaN");
  VocabMetadata bad_byte;
  bad_byte.tokens[3 + 0x41] = "<0xZZ>";
  ExpectError(bad_byte, {}, "token 68 is a byte token but its text is not <0xNN>");
  ExpectError(
      VocabMetadata(), [](GgufWriter& w) { w.SetString("tokenizer.ggml.add_bos_token", "yes"); },
      "tokenizer.ggml.add_bos_token");
}

TEST_F(MalformedVocab, SpecialIdsMustBeInRange) {
  ExpectError(
      VocabMetadata(), [](GgufWriter& w) { w.SetUint32("tokenizer.ggml.bos_token_id", 262); },
      "tokenizer.ggml.bos_token_id 262 is out of range for a vocabulary of 262 tokens");
  ExpectError(
      VocabMetadata(), [](GgufWriter& w) { w.SetInt32("tokenizer.ggml.eos_token_id", -5); },
      "tokenizer.ggml.eos_token_id = -5 is not a token id");
  ExpectError(
      VocabMetadata(),
      [](GgufWriter& w) { w.SetUint64("tokenizer.ggml.eot_token_id", uint64_t{1} << 40); },
      "tokenizer.ggml.eot_token_id");
  ExpectError(
      VocabMetadata(), [](GgufWriter& w) { w.SetString("tokenizer.ggml.unknown_token_id", "0"); },
      "tokenizer.ggml.unknown_token_id");
}

TEST_F(MalformedVocab, SpmNeedsByteTokensOrUnknown) {
  VocabMetadata no_bytes;
  no_bytes.tokens.erase(no_bytes.tokens.begin() + 3, no_bytes.tokens.begin() + 259);
  no_bytes.types.erase(no_bytes.types.begin() + 3, no_bytes.types.begin() + 259);
  no_bytes.scores.resize(no_bytes.tokens.size());
  // With <unk> it loads (unknown characters become <unk>) ...
  auto t = Load(no_bytes);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("\xC3\xA9", false, false), ::testing::ElementsAre(3, 0, 0));
  // ... without, it cannot encode them.
  ExpectError(
      no_bytes, [](GgufWriter& w) { w.SetInt32("tokenizer.ggml.unknown_token_id", -1); },
      "neither a <0x00> byte token nor an unknown token");
}

// A byte-level BPE vocabulary: the 256 byte characters then "ab".
VocabMetadata BpeMetadata() {
  VocabMetadata v;
  v.model = "gpt2";
  v.tokens.clear();
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    std::string text = printable && b < 0x80 ? std::string(1, static_cast<char>(b))
                                             : "#" + std::to_string(b);  // never merged here
    v.tokens.push_back(text);
  }
  v.tokens.push_back("ab");
  v.types.assign(v.tokens.size(), 1);
  v.scores.assign(v.tokens.size(), 0.0f);
  return v;
}

TEST_F(MalformedVocab, BpeMerges) {
  const auto with_merges = [](std::vector<std::string> merges) {
    return [merges](GgufWriter& w) {
      w.SetStringArray("tokenizer.ggml.merges", merges);
      w.SetString("tokenizer.ggml.pre", "gpt2");
    };
  };
  auto t = Load(BpeMetadata(), with_merges({"a b"}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("ab", false, false), ::testing::ElementsAre(256));

  ExpectError(BpeMetadata(), {}, "needs tokenizer.ggml.merges");
  ExpectError(BpeMetadata(), with_merges({"a b", "a q"}), "merge 1 'a q' names unknown token 'aq'");
  ExpectError(BpeMetadata(), with_merges({"a \xC3"}), "names unknown token '\\xc3'");
  ExpectError(BpeMetadata(), with_merges({"ab"}), "merge 0 'ab' is not two tokens and a space");
  ExpectError(BpeMetadata(), with_merges({""}), "merge 0 '' is not two tokens and a space");
  ExpectError(BpeMetadata(), with_merges({" "}), "merge 0 ' ' is not two tokens and a space");
  ExpectError(
      BpeMetadata(),
      [](GgufWriter& w) {
        w.SetStringArray("tokenizer.ggml.merges", std::vector<std::string>{"a b"});
        w.SetString("tokenizer.ggml.pre", "mystery");
      },
      "pre-tokenizer 'mystery' is not supported");
}

TEST(MalformedVocabulary, DirectConstruction) {
  Vocabulary v;
  v.type = VocabType::kBpe;
  v.tokens = {"a", "b"};
  v.token_types = {TokenType::kNormal, static_cast<TokenType>(42)};
  auto t = MakeTokenizer(v);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("token 1 has type 42"));
  v.token_types.clear();
  v.sep_id = 2;
  t = MakeTokenizer(v);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()),
              HasSubstr("tokenizer.ggml.seperator_token_id 2 is out of range"));
  v.sep_id = -1;
  v.tokens.clear();
  EXPECT_FALSE(MakeTokenizer(v).ok());
  // Empty special-token texts are ignored rather than matching everywhere.
  v.tokens = {"", "a"};
  v.token_types = {TokenType::kControl, TokenType::kNormal};
  t = MakeTokenizer(v);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("aa", false, true), ::testing::ElementsAre(1, 1));
}

// Hostile but structurally valid vocabularies: random texts (invalid UTF-8, U+2581, fragments of
// special tokens), random types, scores and special ids. Building either fails cleanly or gives a
// tokenizer that encodes and decodes anything without a crash (this is for ASan/UBSan to watch)
// and only ever emits ids inside the vocabulary.
TEST(MalformedVocabulary, RandomVocabulariesNeverCrash) {
  std::mt19937 rng(20240607);
  const std::vector<std::string> atoms = {"a",      "b", "<",      "|",      ">",
                                          "\u2581", " ", "\xC3",   "\xA9",   "\xFF",
                                          "\n",     "s", "<0x41>", "\u0120", ""};
  const auto random_text = [&](int max_atoms) {
    std::string s;
    const int n = static_cast<int>(rng() % (max_atoms + 1));
    for (int i = 0; i < n; ++i) s += atoms[rng() % atoms.size()];
    return s;
  };
  int built = 0;
  for (int round = 0; round < 60; ++round) {
    Vocabulary v;
    v.type = round % 2 == 0 ? VocabType::kSpm : VocabType::kBpe;
    v.pre = std::vector<std::string>{"gpt2", "llama-bpe", "qwen2", "smollm"}[rng() % 4];
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      v.tokens.push_back(random_text(3));
      // Byte type only for "<0x41>" (others are rejected, tested above).
      const auto type = static_cast<TokenType>(rng() % 7);
      v.token_types.push_back(
          type == TokenType::kByte && v.tokens.back() != "<0x41>" ? TokenType::kNormal : type);
      const float scores[] = {0.0f, -1.0f, 2.5f, -INFINITY, INFINITY};
      v.scores.push_back(scores[rng() % 5]);
    }
    if (v.type == VocabType::kBpe) {
      // Some merges of existing tokens, whose results are then added to the vocabulary.
      for (int i = 0; i < 20; ++i) {
        const std::string& a = v.tokens[rng() % v.tokens.size()];
        const std::string& b = v.tokens[rng() % v.tokens.size()];
        if (a.empty() || b.empty() || a[0] == ' ') continue;
        v.merges.push_back(a + " " + b);
        v.tokens.push_back(a + b);
        v.token_types.push_back(TokenType::kNormal);
        v.scores.push_back(0.0f);
      }
    } else if (rng() % 4 != 0) {
      v.unk_id = static_cast<int32_t>(rng() % v.tokens.size());
    }
    if (rng() % 2 == 0) v.bos_id = static_cast<int32_t>(rng() % v.tokens.size());
    if (rng() % 2 == 0) v.eos_id = static_cast<int32_t>(rng() % v.tokens.size());
    auto t = MakeTokenizer(v);
    if (!t.ok()) {
      EXPECT_FALSE(t.status().message().empty());
      continue;
    }
    ++built;
    for (int i = 0; i < 20; ++i) {
      const std::string text = random_text(12);
      for (bool special : {false, true}) {
        const std::vector<int32_t> ids = (*t)->Encode(text, special, special);
        for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < (*t)->n_vocab());
        (*t)->Decode(ids);
        StreamingDecoder d(**t);
        for (int32_t id : ids) d.Push(id);
        d.Push(-1);
        d.Push((*t)->n_vocab());
        d.Finish();
      }
    }
  }
  EXPECT_GT(built, 10);  // the test must exercise tokenizers, not just rejections
}

}  // namespace
}  // namespace swarm::model
