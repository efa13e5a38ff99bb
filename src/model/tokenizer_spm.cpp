// SentencePiece-style tokenizer (tokenizer.ggml.model = "llama"), as llama.cpp's
// llm_tokenizer_spm: spaces become U+2581, a space is prefixed to each stretch of text that starts
// the input or follows a special token, UTF-8 characters are merged greedily by the score of the
// token they form, and characters with no token fall back to <0xNN> byte tokens.
#include <array>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "model/tokenizer_common.h"
#include "model/tokenizer_utf8.h"

namespace swarm::model {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// Byte value of a "<0xNN>" token text, or -1.
int ParseByteToken(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

class SpmTokenizer final : public VocabTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(Vocabulary vocab) {
    std::unique_ptr<SpmTokenizer> t(new SpmTokenizer(std::move(vocab)));
    SWARM_RETURN_IF_ERROR(t->Init());
    return std::unique_ptr<Tokenizer>(std::move(t));
  }

  bool strips_prefix_space() const override { return vocab().add_space_prefix; }

 protected:
  void EncodeText(std::string_view text, bool after_special,
                  std::vector<int32_t>& out) const override;

 private:
  explicit SpmTokenizer(Vocabulary vocab) : VocabTokenizer(std::move(vocab)) {}
  absl::Status Init();

  std::array<int32_t, 256> byte_ids_{};  // byte -> <0xNN> token (or <unk>)
};

absl::Status SpmTokenizer::Init() {
  const Vocabulary& v = vocab();
  for (int32_t id = 0; id < n_vocab(); ++id) {
    const std::string& text = v.tokens[id];
    switch (v.token_types[id]) {
      case TokenType::kUndefined:
      case TokenType::kNormal: {
        std::string& piece = pieces_[id];
        for (size_t pos = 0;;) {
          const size_t hit = text.find(kSpace, pos);
          piece.append(text, pos, hit == std::string::npos ? std::string::npos : hit - pos);
          if (hit == std::string::npos) break;
          piece += ' ';
          pos = hit + kSpace.size();
        }
        break;
      }
      case TokenType::kByte: {
        const int byte = ParseByteToken(text);
        if (byte < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("tokenizer: token ", id, " is a byte token but its text is not <0xNN>"));
        }
        pieces_[id] = std::string(1, static_cast<char>(byte));
        break;
      }
      case TokenType::kUserDefined:
        pieces_[id] = text;
        break;
      case TokenType::kUnknown:
      case TokenType::kControl:
      case TokenType::kUnused:
        break;
    }
  }
  for (int b = 0; b < 256; ++b) {
    int32_t id = Lookup(absl::StrFormat("<0x%02X>", b));
    if (id < 0) id = v.unk_id;
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tokenizer: SPM vocabulary has neither a <0x%02X> byte token nor an unknown token", b));
    }
    byte_ids_[b] = id;
  }
  return absl::OkStatus();
}

void SpmTokenizer::EncodeText(std::string_view raw, bool after_special,
                              std::vector<int32_t>& out) const {
  std::string text;
  text.reserve(raw.size() * 2 + kSpace.size());
  if (after_special && vocab().add_space_prefix) text += kSpace;
  for (char c : raw) {
    if (c == ' ') {
      text += kSpace;
    } else {
      text += c;
    }
  }

  // Symbols are runs of the text, linked in order; merging grows the left one and empties the
  // right one. Invalid UTF-8 is split into single bytes (they end up as byte tokens).
  struct Symbol {
    size_t start;
    size_t n;
    int prev;
    int next;
  };
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Scan scan = ScanUtf8(text, pos);
    const size_t len = scan.kind == Utf8Scan::kValid ? scan.length : 1;
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({pos, len, index - 1, pos + len == text.size() ? -1 : index + 1});
    pos += len;
  }

  struct Bigram {
    float score;
    int left;
    int right;
    size_t size;
  };
  // Highest score first; on ties the leftmost (llama.cpp's order).
  const auto lower = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower)> queue(lower);
  const std::string_view view = text;
  const auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].n + symbols[right].n;
    const int32_t id = Lookup(view.substr(symbols[left].start, size));
    if (id < 0) return;
    queue.push({vocab().scores[id], left, right, size});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    // Stale: one side was merged away or grew since this bigram was queued.
    if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size) continue;
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  // Every merged symbol is a token; a single character may not be, and becomes bytes.
  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = view.substr(symbols[i].start, symbols[i].n);
    const int32_t id = Lookup(piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (char c : piece) out.push_back(byte_ids_[static_cast<uint8_t>(c)]);
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(Vocabulary vocab) {
  return SpmTokenizer::Create(std::move(vocab));
}

}  // namespace swarm::model
