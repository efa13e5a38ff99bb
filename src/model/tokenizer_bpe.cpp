// Byte-level BPE tokenizer (tokenizer.ggml.model = "gpt2"), as llama.cpp's llm_tokenizer_bpe:
// the text is split into words by the pre-tokenizer's regexes (PCRE2, Unicode properties), each
// word's bytes are mapped to GPT-2's printable code points, and adjacent symbols are merged by the
// rank of their pair in tokenizer.ggml.merges, lowest rank first.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <limits>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/tokenizer_common.h"
#include "model/tokenizer_utf8.h"

namespace swarm::model {
namespace {

// Pre-tokenizer regexes, from the models' tokenizer.json (llama.cpp's spelling of them).
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr const char* kLlama3Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|)"
    R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|)"
    R"(\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kDigitRegex = R"(\p{N})";

struct PreTokenizer {
  std::vector<const char*> regexes;  // applied in turn, each within the pieces of the previous
  bool ignore_merges = false;        // a word that is a token is taken whole (Llama 3)
};

absl::StatusOr<PreTokenizer> ChoosePreTokenizer(std::string_view pre) {
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2" || pre == "mpt" ||
      pre == "olmo" || pre == "jais") {
    return PreTokenizer{{kGpt2Regex}, false};
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    return PreTokenizer{{kLlama3Regex}, true};
  }
  if (pre == "qwen2" || pre == "stablelm2") return PreTokenizer{{kQwen2Regex}, false};
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" ||
      pre == "codeshell") {
    return PreTokenizer{{kDigitRegex, kGpt2Regex}, false};
  }
  return absl::UnimplementedError(absl::StrCat(
      "tokenizer: BPE pre-tokenizer '", ToAbsl(pre),
      "' is not supported (supported: gpt2, llama-bpe/llama3, qwen2, smollm/starcoder)"));
}

struct Pcre2CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct Pcre2MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using Pcre2Code = std::unique_ptr<pcre2_code, Pcre2CodeDeleter>;
using Pcre2MatchData = std::unique_ptr<pcre2_match_data, Pcre2MatchDataDeleter>;

absl::StatusOr<Pcre2Code> CompileRegex(const char* pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InternalError(absl::StrCat("tokenizer: regex does not compile at ", offset, ": ",
                                            reinterpret_cast<const char*>(message)));
  }
  // Much faster where the JIT is available; pcre2_match falls back to the interpreter otherwise.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return Pcre2Code(code);
}

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to U+0100 onwards.
std::array<uint32_t, 256> ByteToCodePoint() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    map[b] = printable ? b : next++;
  }
  return map;
}

class BpeTokenizer final : public VocabTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(Vocabulary vocab) {
    SWARM_ASSIGN_OR_RETURN(PreTokenizer pre, ChoosePreTokenizer(vocab.pre));
    std::unique_ptr<BpeTokenizer> t(new BpeTokenizer(std::move(vocab)));
    SWARM_RETURN_IF_ERROR(t->Init(pre));
    return std::unique_ptr<Tokenizer>(std::move(t));
  }

 protected:
  void EncodeText(std::string_view text, bool after_special,
                  std::vector<int32_t>& out) const override;

 private:
  explicit BpeTokenizer(Vocabulary vocab) : VocabTokenizer(std::move(vocab)) {}
  absl::Status Init(const PreTokenizer& pre);
  std::vector<std::string_view> Split(std::string_view text) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>& out) const;

  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  struct Merge {
    int32_t rank;
    int32_t result;
  };

  std::vector<Pcre2Code> regexes_;
  bool ignore_merges_ = false;
  std::array<std::string, 256> byte_chars_;      // byte -> UTF-8 of its GPT-2 code point
  std::array<int32_t, 256> byte_ids_{};          // byte -> token of that single character, or -1
  absl::flat_hash_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id
};

absl::Status BpeTokenizer::Init(const PreTokenizer& pre) {
  for (const char* pattern : pre.regexes) {
    SWARM_ASSIGN_OR_RETURN(Pcre2Code code, CompileRegex(pattern));
    regexes_.push_back(std::move(code));
  }
  ignore_merges_ = pre.ignore_merges;

  const std::array<uint32_t, 256> to_cp = ByteToCodePoint();
  std::array<int, 512> from_cp;  // code point -> byte, or -1 (code points stay below 512)
  from_cp.fill(-1);
  for (int b = 0; b < 256; ++b) {
    from_cp[to_cp[b]] = b;
    AppendUtf8(to_cp[b], byte_chars_[b]);
    byte_ids_[b] = Lookup(byte_chars_[b]);
  }

  const Vocabulary& v = vocab();
  for (int32_t id = 0; id < n_vocab(); ++id) {
    const std::string& text = v.tokens[id];
    switch (v.token_types[id]) {
      case TokenType::kUndefined:
      case TokenType::kNormal: {
        // Map each code point back to its byte; anything outside the byte alphabet is kept as is.
        std::string& piece = pieces_[id];
        for (size_t pos = 0; pos < text.size();) {
          const Utf8Scan scan = ScanUtf8(text, pos);
          const size_t len = scan.kind == Utf8Scan::kValid ? scan.length : 1;
          int byte = -1;
          if (scan.kind == Utf8Scan::kValid && len <= 2) {
            uint32_t cp = static_cast<uint8_t>(text[pos]);
            if (len == 2) cp = ((cp & 0x1F) << 6) | (static_cast<uint8_t>(text[pos + 1]) & 0x3F);
            if (cp < from_cp.size()) byte = from_cp[cp];
          }
          if (byte >= 0) {
            piece += static_cast<char>(byte);
          } else {
            piece.append(text, pos, len);
          }
          pos += len;
        }
        break;
      }
      case TokenType::kUserDefined:
        pieces_[id] = text;
        break;
      case TokenType::kUnknown:
      case TokenType::kControl:
      case TokenType::kUnused:
      case TokenType::kByte:
        break;
    }
  }

  if (v.merges.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError("tokenizer: too many merges");
  }
  merges_.reserve(v.merges.size());
  std::string merged;
  for (size_t rank = 0; rank < v.merges.size(); ++rank) {
    const std::string_view merge = v.merges[rank];
    const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string_view::npos;
    if (space == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer: merge ", rank, " '",
                                                     absl::CHexEscape(ToAbsl(merge)),
                                                     "' is not two tokens and a space"));
    }
    const std::string_view left = merge.substr(0, space), right = merge.substr(space + 1);
    merged.assign(left);
    merged.append(right);
    const int32_t left_id = Lookup(left), right_id = Lookup(right), merged_id = Lookup(merged);
    for (auto [id, text] : {std::pair{left_id, left}, std::pair{right_id, right},
                            std::pair{merged_id, std::string_view(merged)}}) {
      if (id < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer: merge ", rank, " '", absl::CHexEscape(ToAbsl(merge)),
                         "' names unknown token '", absl::CHexEscape(ToAbsl(text)), "'"));
      }
    }
    merges_.try_emplace(PairKey(left_id, right_id), Merge{static_cast<int32_t>(rank), merged_id});
  }
  return absl::OkStatus();
}

std::vector<std::string_view> BpeTokenizer::Split(std::string_view text) const {
  // Untrusted text may hold invalid UTF-8: each invalid stretch becomes a word of its own (no
  // pattern could match it) and the regexes see only valid stretches, which lets PCRE2 skip its
  // UTF check; checking on every call would make splitting quadratic in the text length.
  struct Piece {
    std::string_view text;
    bool valid;
  };
  std::vector<Piece> pieces;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = pos;
    const bool valid = ScanUtf8(text, pos).kind == Utf8Scan::kValid;
    while (end < text.size()) {
      const Utf8Scan scan = ScanUtf8(text, end);
      if ((scan.kind == Utf8Scan::kValid) != valid) break;
      end += scan.length;
    }
    pieces.push_back({text.substr(pos, end - pos), valid});
    pos = end;
  }

  // As llama.cpp's unicode_regex_split: each regex cuts every piece at its matches, keeping both
  // the matches and the text between them.
  std::vector<Piece> next;
  for (const Pcre2Code& regex : regexes_) {
    Pcre2MatchData match(pcre2_match_data_create_from_pattern(regex.get(), nullptr));
    next.clear();
    for (const Piece& piece : pieces) {
      const std::string_view p = piece.text;
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(p.data());
      size_t done = 0;  // end of the last piece emitted
      size_t start = 0;
      while (piece.valid && start < p.size() && match != nullptr) {
        int rc = pcre2_match(regex.get(), subject, p.size(), start, PCRE2_NO_UTF_CHECK, match.get(),
                             nullptr);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {  // e.g. the JIT stack: try the interpreter
          rc = pcre2_match(regex.get(), subject, p.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                           match.get(), nullptr);
        }
        if (rc < 0) break;  // no match (or a resource limit): the rest stays one piece
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
        const size_t begin = ovector[0], end = ovector[1];
        if (begin < done || end > p.size() || end < begin) break;  // cannot happen
        if (end == begin) {  // no pattern here matches empty, but never loop on one
          start = end + ScanUtf8(p, end).length;
          continue;
        }
        if (begin > done) next.push_back({p.substr(done, begin - done), true});
        next.push_back({p.substr(begin, end - begin), true});
        done = start = end;
      }
      if (done < p.size()) next.push_back({p.substr(done), piece.valid});
    }
    pieces.swap(next);
  }
  std::vector<std::string_view> words;
  words.reserve(pieces.size());
  for (const Piece& piece : pieces) words.push_back(piece.text);
  return words;
}

void BpeTokenizer::EncodeText(std::string_view text, bool /*after_special*/,
                              std::vector<int32_t>& out) const {
  for (std::string_view word : Split(text)) EncodeWord(word, out);
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    std::string encoded;
    for (char c : word) encoded += byte_chars_[static_cast<uint8_t>(c)];
    const int32_t id = Lookup(encoded);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }

  // One symbol per byte of the word, linked in order; merging replaces the left one's token and
  // empties the right one.
  struct Symbol {
    int32_t id;  // -1 for a byte with no token (it can take part in no merge)
    int prev;
    int next;
    bool alive;
  };
  const int n = static_cast<int>(word.size());
  std::vector<Symbol> symbols(n);
  for (int i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  }

  struct Bigram {
    int32_t rank;
    int left;
    int right;
    int32_t left_id;
    int32_t right_id;
    int32_t result;
  };
  // Lowest rank first; on ties the leftmost (llama.cpp's order).
  const auto later = [](const Bigram& a, const Bigram& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(later)> queue(later);
  const auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int32_t l = symbols[left].id, r = symbols[right].id;
    if (l < 0 || r < 0) return;
    const auto it = merges_.find(PairKey(l, r));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, l, r, it->second.result});
  };
  for (int i = 1; i < n; ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    // Stale: a side was merged away or became another token since this bigram was queued.
    if (!left.alive || !right.alive || left.next != bigram.right || left.id != bigram.left_id ||
        right.id != bigram.right_id) {
      continue;
    }
    left.id = bigram.result;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int i = n > 0 ? 0 : -1; i != -1; i = symbols[i].next) {
    if (symbols[i].id >= 0) {
      out.push_back(symbols[i].id);
    } else if (vocab().unk_id >= 0) {
      out.push_back(vocab().unk_id);
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(Vocabulary vocab) {
  return BpeTokenizer::Create(std::move(vocab));
}

}  // namespace swarm::model
