// Tokenizer algorithms on small hand-made vocabularies (SPM merge order and byte fallback, BPE
// merge ranks and pre-tokenizers, special tokens), the streaming decoder, and the real vocabularies
// of stories260K and shared/tokenizer-vectors on inputs the reference files do not cover.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/tokenizer_utf8.h"
#include "model/tokenizer_vocab.h"
#include "support/shared_model.h"

namespace swarm::model {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

std::unique_ptr<Tokenizer> Make(Vocabulary vocab) {
  auto tokenizer = MakeTokenizer(std::move(vocab));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

std::unique_ptr<Tokenizer> Load(const std::string& path) {
  auto file = GgufFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return nullptr;
  auto tokenizer = Tokenizer::FromGguf(**file);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

// --- SPM on a tiny vocabulary ---------------------------------------------------------------

// <unk> <s> </s>, the 256 byte tokens (ids 3..258), then `normal` with their scores.
constexpr int32_t kSpmFirst = 259;
Vocabulary SpmVocab(const std::vector<std::pair<std::string, float>>& normal) {
  Vocabulary v;
  v.type = VocabType::kSpm;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.token_types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  v.scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char text[8];
    std::snprintf(text, sizeof(text), "<0x%02X>", b);
    v.tokens.push_back(text);
    v.token_types.push_back(TokenType::kByte);
    v.scores.push_back(0);
  }
  for (const auto& [text, score] : normal) {
    v.tokens.push_back(text);
    v.token_types.push_back(TokenType::kNormal);
    v.scores.push_back(score);
  }
  v.unk_id = 0, v.bos_id = 1, v.eos_id = 2;
  return v;
}

TEST(SpmTokenizer, MergesHighestScoreFirst) {
  // "abc" -> "▁abc": candidate pairs ▁a (-3), ab (-2), bc (-1.5).
  auto t = Make(SpmVocab({{"\u2581", -1},
                          {"a", -1},
                          {"b", -1},
                          {"c", -1},
                          {"ab", -2},
                          {"bc", -1.5},
                          {"\u2581a", -3}}));
  ASSERT_NE(t, nullptr);
  // bc wins, then the queued "▁a" still applies: [▁a, bc].
  EXPECT_THAT(t->Encode("abc", false, false), ElementsAre(kSpmFirst + 6, kSpmFirst + 5));
  // Once "bc" is worse than "ab", ab wins and leaves "▁" alone: [▁, ab, c].
  auto u = Make(SpmVocab({{"\u2581", -1},
                          {"a", -1},
                          {"b", -1},
                          {"c", -1},
                          {"ab", -2},
                          {"bc", -2.5},
                          {"\u2581a", -3}}));
  ASSERT_NE(u, nullptr);
  EXPECT_THAT(u->Encode("abc", false, false),
              ElementsAre(kSpmFirst + 0, kSpmFirst + 4, kSpmFirst + 3));
}

TEST(SpmTokenizer, EqualScoresMergeLeftmostFirst) {
  auto t =
      Make(SpmVocab({{"\u2581", -1}, {"a", -1}, {"b", -1}, {"c", -1}, {"ab", -2}, {"bc", -2}}));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("abc", false, false),
              ElementsAre(kSpmFirst + 0, kSpmFirst + 4, kSpmFirst + 3));
}

TEST(SpmTokenizer, SpacesBecomeU2581AndPrefixIsAdded) {
  auto t = Make(SpmVocab({{"\u2581", -1}, {"a", -1}, {"\u2581a", -0.5}}));
  ASSERT_NE(t, nullptr);
  const int32_t space = kSpmFirst, a = kSpmFirst + 1, space_a = kSpmFirst + 2;
  EXPECT_THAT(t->Encode("a a", false, false), ElementsAre(space_a, space_a));
  EXPECT_THAT(t->Encode(" a", false, false), ElementsAre(space, space_a));
  EXPECT_THAT(t->Encode("a", true, false), ElementsAre(1, space_a));
  EXPECT_THAT(t->Encode("", false, false), IsEmpty());
  EXPECT_THAT(t->Encode("", true, false), ElementsAre(1));
  // Decoding drops the prefix space at the start and after BOS, nowhere else.
  EXPECT_EQ(t->Decode({space_a, space_a}), "a a");
  EXPECT_EQ(t->Decode({1, space_a, space_a}), "a a");
  EXPECT_EQ(t->Decode({a, space_a}), "a a");
  EXPECT_EQ(t->TokenBytes(space_a), " a");

  Vocabulary no_prefix = SpmVocab({{"\u2581", -1}, {"a", -1}, {"\u2581a", -0.5}});
  no_prefix.add_space_prefix = false;
  auto n = Make(std::move(no_prefix));
  ASSERT_NE(n, nullptr);
  EXPECT_THAT(n->Encode("a a", false, false), ElementsAre(a, space_a));
  EXPECT_EQ(n->Decode({space_a}), " a");
}

TEST(SpmTokenizer, UnknownCharactersFallBackToBytes) {
  auto t = Make(SpmVocab({{"\u2581", -1}, {"a", -1}}));
  ASSERT_NE(t, nullptr);
  // "é" is C3 A9; "😀" is F0 9F 98 80; byte token of b is 3 + b.
  EXPECT_THAT(t->Encode("a\xC3\xA9", false, false),
              ElementsAre(kSpmFirst, kSpmFirst + 1, 3 + 0xC3, 3 + 0xA9));
  const std::string invalid = "a\xE2(\xFF";  // truncated sequence, then an impossible byte
  const std::vector<int32_t> ids = t->Encode(invalid, false, false);
  EXPECT_THAT(ids, ElementsAre(kSpmFirst, kSpmFirst + 1, 3 + 0xE2, 3 + '(', 3 + 0xFF));
  EXPECT_EQ(t->Decode(ids), invalid);
  EXPECT_EQ(t->TokenBytes(3 + 0xC3), "\xC3");
}

TEST(SpmTokenizer, WithoutByteTokensUnknownIsUsed) {
  Vocabulary v;
  v.type = VocabType::kSpm;
  v.tokens = {"<unk>", "<s>", "</s>", "\u2581", "a"};
  v.token_types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl,
                   TokenType::kNormal, TokenType::kNormal};
  v.unk_id = 0, v.bos_id = 1, v.eos_id = 2;
  auto t = Make(std::move(v));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("a\xC3\xA9", false, false), ElementsAre(3, 4, 0, 0));
  EXPECT_EQ(t->TokenBytes(0), "");
}

// --- byte-level BPE on a tiny vocabulary ----------------------------------------------------

// GPT-2's byte alphabet: token b (0..255) is the single character byte b maps to.
std::string ByteChar(uint8_t b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  uint32_t cp = b;
  if (!printable) {
    cp = 256;
    for (int i = 0; i < b; ++i) {
      const bool p = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE;
      if (!p) ++cp;
    }
  }
  std::string out;
  AppendUtf8(cp, out);
  return out;
}

Vocabulary BpeVocab(std::string pre, const std::vector<std::string>& extra,
                    const std::vector<std::string>& merges) {
  Vocabulary v;
  v.type = VocabType::kBpe;
  v.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) v.tokens.push_back(ByteChar(static_cast<uint8_t>(b)));
  for (const std::string& t : extra) v.tokens.push_back(t);
  v.merges = merges;
  v.add_bos = false;
  return v;
}

TEST(BpeTokenizer, ByteAlphabetIsGpt2s) {
  EXPECT_EQ(ByteChar(' '), "\u0120");   // Ġ
  EXPECT_EQ(ByteChar('\n'), "\u010A");  // Ċ
  EXPECT_EQ(ByteChar('A'), "A");
  EXPECT_EQ(ByteChar(0xAD), "\u0143");  // the one gap inside Latin-1
}

TEST(BpeTokenizer, EveryByteRoundTrips) {
  auto t = Make(BpeVocab("gpt2", {}, {}));
  ASSERT_NE(t, nullptr);
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  const std::vector<int32_t> ids = t->Encode(all, false, false);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(t->Decode(ids), all);
}

TEST(BpeTokenizer, MergesLowestRankFirst) {
  // 256 "ab", 257 "bc"
  auto t = Make(BpeVocab("gpt2", {"ab", "bc"}, {"b c", "a b"}));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("abc", false, false), ElementsAre('a', 257));
  auto u = Make(BpeVocab("gpt2", {"ab", "bc"}, {"a b", "b c"}));
  ASSERT_NE(u, nullptr);
  EXPECT_THAT(u->Encode("abc", false, false), ElementsAre(256, 'c'));
  EXPECT_EQ(u->Decode({256, 'c'}), "abc");
  // Chains: "abab" -> ab ab -> abab.
  auto w = Make(BpeVocab("gpt2", {"ab", "abab"}, {"a b", "ab ab"}));
  ASSERT_NE(w, nullptr);
  EXPECT_THAT(w->Encode("abab", false, false), ElementsAre(257));
  EXPECT_THAT(w->Encode("ababa", false, false), ElementsAre(257, 'a'));
}

TEST(BpeTokenizer, PreTokenizersSplitDigitsDifferently) {
  const std::vector<std::string> tokens = {"12", "123", "1234"};
  const std::vector<std::string> merges = {"1 2", "12 3", "123 4"};
  const auto encode = [&](const std::string& pre) {
    auto t = Make(BpeVocab(pre, tokens, merges));
    return t ? t->Encode("1234", false, false) : std::vector<int32_t>{-1};
  };
  EXPECT_THAT(encode("gpt2"), ElementsAre(258));                  // \p{N}+
  EXPECT_THAT(encode(""), ElementsAre(258));                      // GPT-2 by default
  EXPECT_THAT(encode("llama-bpe"), ElementsAre(257, '4'));        // \p{N}{1,3}
  EXPECT_THAT(encode("qwen2"), ElementsAre('1', '2', '3', '4'));  // \p{N}
  EXPECT_THAT(encode("smollm"), ElementsAre('1', '2', '3', '4'));
}

TEST(BpeTokenizer, PreTokenizersSplitWords) {
  // 256 "Ġb", 257 "'S", 258 "'s", 259 "Ġ'", 260 "Ġ'S"
  const std::vector<std::string> tokens = {"\u0120b", "'S", "'s", "\u0120'", "\u0120'S"};
  const std::vector<std::string> merges = {"\u0120 b", "' S", "' s", "\u0120 '", "\u0120' S"};
  auto gpt2 = Make(BpeVocab("gpt-2", tokens, merges));
  auto llama3 = Make(BpeVocab("llama-bpe", tokens, merges));
  ASSERT_NE(gpt2, nullptr);
  ASSERT_NE(llama3, nullptr);
  // A space joins the word after it.
  EXPECT_THAT(gpt2->Encode("a b", false, false), ElementsAre('a', 256));
  // GPT-2 knows only lower-case contractions; Llama 3 both.
  EXPECT_THAT(gpt2->Encode("A's", false, false), ElementsAre('A', 258));
  EXPECT_THAT(gpt2->Encode("A'S", false, false), ElementsAre('A', '\'', 'S'));
  EXPECT_THAT(llama3->Encode("A'S", false, false), ElementsAre('A', 257));
  // Whitespace before a non-space stays with it only for one space ("\s+(?!\S)").
  EXPECT_THAT(gpt2->Encode("   b", false, false), ElementsAre(' ', ' ', 256));
  // Letters and digits are separate words.
  EXPECT_THAT(gpt2->Encode("b1", false, false), ElementsAre('b', '1'));
}

TEST(BpeTokenizer, Llama3TakesWholeWordTokensIgnoringMerges) {
  auto llama3 = Make(BpeVocab("llama3", {"xyz"}, {}));
  auto gpt2 = Make(BpeVocab("gpt2", {"xyz"}, {}));
  ASSERT_NE(llama3, nullptr);
  ASSERT_NE(gpt2, nullptr);
  EXPECT_THAT(llama3->Encode("xyz", false, false), ElementsAre(256));
  EXPECT_THAT(gpt2->Encode("xyz", false, false), ElementsAre('x', 'y', 'z'));
}

TEST(BpeTokenizer, UnicodeLettersAreLetters) {
  // "é" (C3 A9) is \p{L}: with GPT-2's regex " é" is one word, so "Ġ" + "Ã" can merge.
  const std::string e_acute = ByteChar(0xC3) + ByteChar(0xA9);
  auto t = Make(BpeVocab("gpt2", {"\u0120" + ByteChar(0xC3)}, {"\u0120 " + ByteChar(0xC3)}));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode(" \xC3\xA9", false, false), ElementsAre(256, 0xA9));
  // "½" (C2 BD) is \p{N}, "!" is neither: " !" is one word, "½!" two.
  EXPECT_THAT(t->Encode("\xC2\xBD!", false, false), ElementsAre(0xC2, 0xBD, '!'));
}

TEST(BpeTokenizer, InvalidUtf8IsKeptByteForByte) {
  auto t = Make(BpeVocab("llama3", {}, {}));
  ASSERT_NE(t, nullptr);
  const std::string invalid = "ab\xFF\xC3 c\xE2\x82";
  const std::vector<int32_t> ids = t->Encode(invalid, false, false);
  EXPECT_EQ(ids.size(), invalid.size());
  EXPECT_EQ(t->Decode(ids), invalid);
}

TEST(BpeTokenizer, UnsupportedPreTokenizerIsAnError) {
  auto t = MakeTokenizer(BpeVocab("no-such-pre", {}, {}));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(t.status().message()), ::testing::HasSubstr("no-such-pre"));
}

// --- special tokens -------------------------------------------------------------------------

// 256 <|im_start|> (control), 257 <|im_end|> (control), 258 <|im (control), 259 <tool>
// (user-defined), 260 <|endoftext|> (control, EOS), 261 <|im_end|>-lookalike "im_end" (normal).
Vocabulary ChatVocab() {
  Vocabulary v = BpeVocab(
      "qwen2", {"<|im_start|>", "<|im_end|>", "<|im", "<tool>", "<|endoftext|>", "im_end"}, {});
  v.token_types.assign(v.tokens.size(), TokenType::kNormal);
  v.token_types[256] = v.token_types[257] = v.token_types[258] = TokenType::kControl;
  v.token_types[259] = TokenType::kUserDefined;
  v.token_types[260] = TokenType::kControl;
  v.eos_id = 260;
  v.bos_id = 256;
  return v;
}

TEST(SpecialTokens, ParsedOnlyWhenAskedLongestFirst) {
  auto t = Make(ChatVocab());
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("<|im_start|>hi<|im_end|>", false, true), ElementsAre(256, 'h', 'i', 257));
  EXPECT_THAT(t->Encode("<|im<|im_start|>", false, true), ElementsAre(258, 256));
  // Without parse_special, control texts are plain text (bytes here, as there are no merges).
  const std::vector<int32_t> plain = t->Encode("<|im_end|>", false, false);
  EXPECT_EQ(plain.size(), std::string("<|im_end|>").size());
  EXPECT_EQ(t->Decode(plain), "<|im_end|>");
  // User-defined tokens are always matched whole (llama.cpp, Hugging Face), and decode to text.
  EXPECT_THAT(t->Encode("a<tool>b", false, false), ElementsAre('a', 259, 'b'));
  EXPECT_EQ(t->Decode({'a', 259, 'b'}), "a<tool>b");
  // Control tokens decode to nothing; BOS is added on request only.
  EXPECT_EQ(t->Decode({256, 'h', 257}), "h");
  EXPECT_THAT(t->Encode("h", true, false), ElementsAre(256, 'h'));
  EXPECT_EQ(t->TokenText(257), "<|im_end|>");
  EXPECT_EQ(t->TokenText(-1), "");
  EXPECT_EQ(t->TokenText(100000), "");
  EXPECT_EQ(t->TokenBytes(100000), "");
}

TEST(SpecialTokens, EndOfGeneration) {
  Vocabulary v = ChatVocab();
  v.eot_id = 'x';
  auto t = Make(std::move(v));
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->IsEndOfGeneration(260));  // eos
  EXPECT_TRUE(t->IsEndOfGeneration(257));  // <|im_end|>, a control token
  EXPECT_TRUE(t->IsEndOfGeneration('x'));  // eot
  EXPECT_FALSE(t->IsEndOfGeneration(256));
  EXPECT_FALSE(t->IsEndOfGeneration(261));
  EXPECT_FALSE(t->IsEndOfGeneration(-1));
  EXPECT_FALSE(t->IsEndOfGeneration(1 << 20));
  // A normal token whose text looks like an end marker is not one.
  Vocabulary w = ChatVocab();
  w.token_types[257] = TokenType::kNormal;
  auto u = Make(std::move(w));
  ASSERT_NE(u, nullptr);
  EXPECT_FALSE(u->IsEndOfGeneration(257));
}

TEST(SpecialTokens, SpmPrefixesASpaceAfterEachSpecialToken) {
  auto t = Load(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->add_bos());
  EXPECT_TRUE(t->IsEndOfGeneration(2));
  EXPECT_FALSE(t->IsEndOfGeneration(1));
  // "▁Hello" is 15043, "▁world" 3186 (reference vectors).
  EXPECT_THAT(t->Encode("<s>Hello</s>world", false, true), ElementsAre(1, 15043, 2, 3186));
  // A space after a special token is then a second one: "▁▁world" -> "▁" (29871) "▁world".
  EXPECT_THAT(t->Encode("<s>Hello</s> world", false, true), ElementsAre(1, 15043, 2, 29871, 3186));
  EXPECT_THAT(t->Encode("Hello world", true, false), ElementsAre(1, 15043, 3186));
  EXPECT_EQ(t->Decode({1, 15043, 2, 3186}), "Helloworld");
  EXPECT_EQ(t->Decode({1, 15043, 2, 29871, 3186}), "Hello world");
  EXPECT_EQ(t->Decode({1, 15043, 3186}), "Hello world");
  // Unparsed, "<s>" is text.
  const std::vector<int32_t> plain = t->Encode("<s>", false, false);
  EXPECT_THAT(plain, ::testing::Not(::testing::Contains(1)));
  EXPECT_EQ(t->Decode(plain), "<s>");

  auto g = Load(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(g->add_bos());
  EXPECT_TRUE(g->IsEndOfGeneration(50256));
  EXPECT_THAT(g->Encode("Hello<|endoftext|>", false, true), ElementsAre(15496, 50256));
  EXPECT_THAT(g->Encode("Hello<|endoftext|>", false, false),
              ::testing::Not(::testing::Contains(50256)));
}

// --- streaming decoder ----------------------------------------------------------------------

TEST(Utf8, MaximalSubpartsBecomeOneReplacementEach) {
  const auto sanitize = [](std::string_view in) {
    std::string out;
    AppendSanitizedUtf8(in, true, out);
    return out;
  };
  const std::string r = kReplacement;
  EXPECT_EQ(sanitize("a\xC3\xA9z"), "a\xC3\xA9z");
  EXPECT_EQ(sanitize("\xC0\x80"), r + r);                  // overlong
  EXPECT_EQ(sanitize("\xED\xA0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(sanitize("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(sanitize("\xE2\x82z"), r + "z");               // truncated: one U+FFFD
  EXPECT_EQ(sanitize("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  std::string out;
  EXPECT_EQ(AppendSanitizedUtf8("ab\xF0\x9F", false, out), 2u);  // holds the tail back
  EXPECT_EQ(out, "ab");
}

TEST(StreamingDecoder, HoldsBackSplitCharacters) {
  auto t = Load(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  ASSERT_NE(t, nullptr);
  // "😀" is not in Llama's vocabulary: four byte tokens.
  const std::string text = "Hi \xF0\x9F\x98\x80 \xC3\xA9t\xC3\xA9";
  std::vector<int32_t> ids = t->Encode(text, true, false);
  const std::vector<int32_t> emoji = {3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80};
  ASSERT_NE(std::search(ids.begin(), ids.end(), emoji.begin(), emoji.end()), ids.end());

  StreamingDecoder decoder(*t);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = decoder.Push(id);
    std::string check;
    EXPECT_EQ(AppendSanitizedUtf8(piece, false, check), piece.size());
    EXPECT_EQ(check, piece) << "incomplete or invalid UTF-8 emitted";
    if (id == 3 + 0xF0 || id == 3 + 0x9F || id == 3 + 0x98) {
      EXPECT_EQ(piece, "");
    }
    if (id == 3 + 0x80) {
      EXPECT_EQ(piece, "\xF0\x9F\x98\x80");
    }
    streamed += piece;
  }
  streamed += decoder.Finish();
  EXPECT_EQ(streamed, text);  // leading space after BOS dropped, as Decode does
  EXPECT_EQ(streamed, t->Decode(ids));
}

TEST(StreamingDecoder, ReplacesInvalidBytes) {
  auto t = Load(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  ASSERT_NE(t, nullptr);
  StreamingDecoder decoder(*t);
  EXPECT_EQ(decoder.Push(3 + 0xFF), kReplacement);
  EXPECT_EQ(decoder.Push(3 + 0xE2), "");
  EXPECT_EQ(decoder.Push(3 + 0x82), "");
  EXPECT_EQ(decoder.Push(3 + 'a'), std::string(kReplacement) + "a");  // E2 82 cut short
  EXPECT_EQ(decoder.Push(3 + 0xE2), "");
  EXPECT_EQ(decoder.Finish(), kReplacement);
  EXPECT_EQ(decoder.Finish(), "");
}

TEST(StreamingDecoder, LeadingSpaceRule) {
  auto t = Load(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  ASSERT_NE(t, nullptr);
  const int32_t hello = 15043, world = 3186;  // "▁Hello", "▁world"
  {
    StreamingDecoder d(*t);
    EXPECT_EQ(d.Push(1), "");
    EXPECT_EQ(d.Push(hello), "Hello");
    EXPECT_EQ(d.Push(world), " world");
  }
  {
    StreamingDecoder d(*t);
    EXPECT_EQ(d.Push(hello), "Hello");
  }
  {
    // Continuing a prompt whose tokens were not pushed: the space stays.
    StreamingDecoder d(*t, /*at_start=*/false);
    EXPECT_EQ(d.Push(world), " world");
  }
  // Byte-level BPE has no such rule.
  auto g = Load(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  ASSERT_NE(g, nullptr);
  StreamingDecoder d(*g);
  EXPECT_EQ(d.Push(995), " world");  // "Ġworld"
}

// --- real vocabularies ----------------------------------------------------------------------

TEST(Stories260K, OnceUponATime) {
  auto t = Load(test_support::kSharedModel);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->n_vocab(), 512);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->add_bos());
  const std::vector<int32_t> ids = t->Encode("Once upon a time", true, false);
  // Whole words of a children's-story vocabulary: "▁Once" "▁upon" "▁a" "▁time".
  EXPECT_THAT(ids, ElementsAre(1, 403, 407, 261, 378));
  EXPECT_EQ(t->TokenText(403), "\u2581Once");
  EXPECT_EQ(t->TokenBytes(407), " upon");
  EXPECT_EQ(t->Decode(ids), "Once upon a time");

  // The reference continuation (200 greedy tokens after BOS, plus the newline its writer put at
  // the end) re-encodes to exactly BOS + 200 tokens, and round-trips.
  std::ifstream in(test_support::kSharedReferenceText, std::ios::binary);
  std::string reference((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(reference.empty());
  ASSERT_EQ(reference.back(), '\n');
  reference.pop_back();
  const std::vector<int32_t> story = t->Encode(reference, true, false);
  EXPECT_EQ(story.size(), 201u);
  EXPECT_EQ(t->Decode(story), reference);
}

// Random mixtures of ASCII, multi-byte characters, whitespace and stray bytes.
std::vector<std::string> RandomTexts(int count) {
  const std::vector<std::string> atoms = {"a",
                                          "Z",
                                          " ",
                                          "  ",
                                          "\n",
                                          "\t",
                                          "7",
                                          "'s",
                                          "'LL",
                                          "!",
                                          "...",
                                          "\xC3\xA9",
                                          "\xE2\x82\xAC",
                                          "\xF0\x9F\x98\x80",
                                          "\xE4\xB8\xAD",
                                          "\xD0\x96",
                                          "\xFF",
                                          "\xC3",
                                          "\x80",
                                          "\xE2\x82",
                                          "<s>",
                                          "<|endoftext|>",
                                          "\xC2\xBD",
                                          "\r\n",
                                          "\xE3\x80\x80"};
  std::mt19937 rng(1234);
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    std::string s;
    const int n = std::uniform_int_distribution<int>(0, 24)(rng);
    for (int j = 0; j < n; ++j) s += atoms[rng() % atoms.size()];
    texts.push_back(s);
  }
  return texts;
}

TEST(RealVocabularies, RandomTextRoundTrips) {
  for (const char* name : {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"}) {
    auto t = Load(std::string(SWARM_SHARED_DIR "/tokenizer-vectors/") + name);
    ASSERT_NE(t, nullptr);
    for (const std::string& s : RandomTexts(300)) {
      SCOPED_TRACE(std::string(name) + ": " + s);
      const std::vector<int32_t> ids = t->Encode(s, false, false);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < t->n_vocab());
      // Lossless for both (special-token texts are plain text here).
      EXPECT_EQ(t->Decode(ids), s);
      // Streaming gives the same text wherever it is valid UTF-8.
      StreamingDecoder d(*t);
      std::string streamed;
      for (int32_t id : ids) streamed += d.Push(id);
      streamed += d.Finish();
      std::string sanitized;
      AppendSanitizedUtf8(s, true, sanitized);
      EXPECT_EQ(streamed, sanitized);
    }
  }
}

}  // namespace
}  // namespace swarm::model
