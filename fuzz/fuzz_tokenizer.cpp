// libFuzzer target: tokenizers built from fuzzed vocabularies (model/tokenizer_vocab.h), as a
// GGUF file from anyone may hold them: SPM and BPE, tokens, scores, token types, merges, special
// ids and the pre-tokenizer all come from the input, then the rest of the input is encoded with
// and without special-token parsing and the ids decoded back, whole and streamed. Every id must be
// in the vocabulary and the streamed text valid UTF-8.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_format.h"
#include "model/tokenizer.h"
#include "model/tokenizer_vocab.h"

namespace {

namespace m = swarm::model;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    std::abort();
  }
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

constexpr const char* kPre[] = {"", "gpt2", "llama3", "qwen2", "smollm", "default", "unknown-pre"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  m::Vocabulary v;
  v.type = in.ConsumeBool() ? m::VocabType::kBpe : m::VocabType::kSpm;
  v.pre = kPre[in.ConsumeIntegralInRange<size_t>(0, std::size(kPre) - 1)];
  const int n = in.ConsumeIntegralInRange<int>(1, 96);
  const bool with_scores = in.ConsumeBool();
  const bool with_types = in.ConsumeBool();
  for (int i = 0; i < n; ++i) {
    const uint8_t kind = in.ConsumeIntegral<uint8_t>();
    if (kind < 32) {
      // A byte-fallback token, as SPM vocabularies hold all 256.
      v.tokens.push_back(absl::StrFormat("<0x%02X>", in.ConsumeIntegral<uint8_t>()));
    } else {
      v.tokens.push_back(in.ConsumeRandomLengthString(12));
    }
    if (with_scores) v.scores.push_back(in.ConsumeIntegralInRange<int>(-1000, 1000) / 10.0f);
    if (with_types) {
      v.token_types.push_back(static_cast<m::TokenType>(in.ConsumeIntegralInRange<int>(0, 6)));
    }
  }
  if (v.type == m::VocabType::kBpe) {
    const int n_merges = in.ConsumeIntegralInRange<int>(0, 64);
    for (int i = 0; i < n_merges; ++i) {
      if (in.ConsumeBool()) {
        const auto a = in.ConsumeIntegralInRange<size_t>(0, v.tokens.size() - 1);
        const auto b = in.ConsumeIntegralInRange<size_t>(0, v.tokens.size() - 1);
        v.merges.push_back(v.tokens[a] + " " + v.tokens[b]);
      } else {
        v.merges.push_back(in.ConsumeRandomLengthString(16));
      }
    }
  }
  auto special = [&] { return in.ConsumeIntegralInRange<int32_t>(-1, n); };
  v.bos_id = special();
  v.eos_id = special();
  v.eot_id = special();
  v.unk_id = special();
  v.add_bos = in.ConsumeBool();
  v.add_space_prefix = in.ConsumeBool();
  const bool add_bos = in.ConsumeBool();
  const bool parse_special = in.ConsumeBool();
  const std::string text = in.ConsumeRemainingBytesAsString();

  auto tokenizer = m::MakeTokenizer(std::move(v));
  if (!tokenizer.ok()) return 0;
  const m::Tokenizer& tok = **tokenizer;
  Check(tok.n_vocab() == n, "n_vocab differs from the vocabulary");

  const std::vector<int32_t> ids = tok.Encode(text, add_bos, parse_special);
  for (int32_t id : ids) Check(id >= 0 && id < n, "Encode produced an id outside the vocabulary");
  (void)tok.Decode(ids);
  (void)tok.Encode(text, !add_bos, !parse_special);

  m::StreamingDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) {
    streamed += stream.Push(id);
    (void)tok.TokenBytes(id);
    (void)tok.TokenText(id);
    (void)tok.IsEndOfGeneration(id);
  }
  streamed += stream.Finish();
  Check(ValidUtf8(streamed), "StreamingDecoder produced invalid UTF-8");

  // Ids a hostile peer or client might send back.
  for (int32_t id : {-1, n, n + 1, INT32_MAX, INT32_MIN}) {
    Check(tok.TokenBytes(id).empty(), "TokenBytes of an out-of-range id is not empty");
    (void)tok.TokenText(id);
    (void)tok.IsEndOfGeneration(id);
    (void)tok.Decode({id});
  }
  return 0;
}
