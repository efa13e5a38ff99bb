#include "model/tokenizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/gguf.h"
#include "model/tokenizer_common.h"
#include "model/tokenizer_utf8.h"
#include "model/tokenizer_vocab.h"

namespace swarm::model {
namespace {

constexpr std::string_view kKeyModel = "tokenizer.ggml.model";
constexpr std::string_view kKeyPre = "tokenizer.ggml.pre";
constexpr std::string_view kKeyTokens = "tokenizer.ggml.tokens";
constexpr std::string_view kKeyScores = "tokenizer.ggml.scores";
constexpr std::string_view kKeyTokenType = "tokenizer.ggml.token_type";
constexpr std::string_view kKeyMerges = "tokenizer.ggml.merges";
constexpr std::string_view kKeyAddBos = "tokenizer.ggml.add_bos_token";
constexpr std::string_view kKeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix";

// Texts of control tokens that end a turn in common chat formats (as llama.cpp's EOG list).
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",
    "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>",
};

// The getters' messages name the key already.
template <typename T>
absl::StatusOr<T> WithKey(absl::StatusOr<T> value, std::string_view /*key*/) {
  if (value.ok()) return value;
  return absl::Status(value.status().code(), absl::StrCat("tokenizer: ", value.status().message()));
}

// An optional special-token id. -1 and 0xFFFFFFFF (-1 written as uint32, as some converters do)
// mean "none"; anything else must be a plausible id (range is checked against the vocabulary in
// ValidateVocabulary).
absl::Status ReadSpecialId(const GgufFile& file, std::string_view name, int32_t& id) {
  const std::string key = absl::StrCat("tokenizer.ggml.", ToAbsl(name));
  if (!file.Has(key)) return absl::OkStatus();
  SWARM_ASSIGN_OR_RETURN(int64_t value, WithKey(file.GetInt(key), key));
  if (value == -1 || value == 0xFFFFFFFFll) {
    id = -1;
    return absl::OkStatus();
  }
  if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer: ", key, " = ", value, " is not a token id"));
  }
  id = static_cast<int32_t>(value);
  return absl::OkStatus();
}

absl::Status CheckSpecialId(std::string_view name, int32_t id, size_t n_vocab) {
  if (id == -1 || (id >= 0 && static_cast<size_t>(id) < n_vocab)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("tokenizer: tokenizer.ggml.", ToAbsl(name), " ",
                                                 id, " is out of range for a vocabulary of ",
                                                 n_vocab, " tokens"));
}

}  // namespace

absl::StatusOr<Vocabulary> ReadVocabulary(const GgufFile& file) {
  Vocabulary v;
  if (!file.Has(kKeyModel)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer: ", file.path(), " has no tokenizer (", ToAbsl(kKeyModel), " is missing)"));
  }
  SWARM_ASSIGN_OR_RETURN(std::string_view model, WithKey(file.GetString(kKeyModel), kKeyModel));
  if (model == "llama") {
    v.type = VocabType::kSpm;
  } else if (model == "gpt2") {
    v.type = VocabType::kBpe;
  } else {
    return absl::UnimplementedError(absl::StrCat("tokenizer: ", ToAbsl(kKeyModel), " '",
                                                 ToAbsl(model),
                                                 "' is not supported (supported: llama, gpt2)"));
  }
  if (file.Has(kKeyPre)) {
    SWARM_ASSIGN_OR_RETURN(std::string_view pre, WithKey(file.GetString(kKeyPre), kKeyPre));
    v.pre = std::string(pre);
  }

  {
    SWARM_ASSIGN_OR_RETURN(auto tokens, WithKey(file.GetStringArray(kKeyTokens), kKeyTokens));
    v.tokens.reserve(tokens.size());
    for (std::string_view t : tokens) v.tokens.emplace_back(t);
  }
  if (file.Has(kKeyScores)) {
    SWARM_ASSIGN_OR_RETURN(v.scores, WithKey(file.GetFloatArray(kKeyScores), kKeyScores));
  }
  if (file.Has(kKeyTokenType)) {
    SWARM_ASSIGN_OR_RETURN(auto types, WithKey(file.GetIntArray(kKeyTokenType), kKeyTokenType));
    v.token_types.reserve(types.size());
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] < 0 || types[i] > static_cast<int64_t>(TokenType::kByte)) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", ToAbsl(kKeyTokenType), "[", i,
                                                       "] = ", types[i],
                                                       " is not a token type (0..6)"));
      }
      v.token_types.push_back(static_cast<TokenType>(types[i]));
    }
  }
  if (v.type == VocabType::kBpe) {
    if (!file.Has(kKeyMerges)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: a gpt2 (BPE) vocabulary needs ", ToAbsl(kKeyMerges)));
    }
    SWARM_ASSIGN_OR_RETURN(auto merges, WithKey(file.GetStringArray(kKeyMerges), kKeyMerges));
    v.merges.reserve(merges.size());
    for (std::string_view m : merges) v.merges.emplace_back(m);
  }

  // llama.cpp's defaults: SPM vocabularies are Llama's (<unk> <s> </s> first, BOS added).
  const size_t n = v.tokens.size();
  if (v.type == VocabType::kSpm) {
    v.unk_id = n > 0 ? 0 : -1;
    v.bos_id = n > 1 ? 1 : -1;
    v.eos_id = n > 2 ? 2 : -1;
    v.add_bos = true;
  } else {
    v.add_bos = false;
  }
  SWARM_RETURN_IF_ERROR(ReadSpecialId(file, "bos_token_id", v.bos_id));
  SWARM_RETURN_IF_ERROR(ReadSpecialId(file, "eos_token_id", v.eos_id));
  SWARM_RETURN_IF_ERROR(ReadSpecialId(file, "eot_token_id", v.eot_id));
  SWARM_RETURN_IF_ERROR(ReadSpecialId(file, "eom_token_id", v.eom_id));
  SWARM_RETURN_IF_ERROR(ReadSpecialId(file, "unknown_token_id", v.unk_id));
  SWARM_RETURN_IF_ERROR(ReadSpecialId(file, "padding_token_id", v.pad_id));
  SWARM_RETURN_IF_ERROR(ReadSpecialId(file, "seperator_token_id", v.sep_id));  // sic (llama.cpp)
  if (file.Has(kKeyAddBos)) {
    SWARM_ASSIGN_OR_RETURN(v.add_bos, WithKey(file.GetBool(kKeyAddBos), kKeyAddBos));
  }
  if (file.Has(kKeyAddSpacePrefix)) {
    SWARM_ASSIGN_OR_RETURN(v.add_space_prefix,
                           WithKey(file.GetBool(kKeyAddSpacePrefix), kKeyAddSpacePrefix));
  }
  return v;
}

absl::Status ValidateVocabulary(Vocabulary& v) {
  const size_t n = v.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("tokenizer: the vocabulary is empty");
  if (n >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", n, " tokens is too many"));
  }
  if (v.scores.empty()) {
    v.scores.assign(n, 0.0f);
  } else if (v.scores.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", ToAbsl(kKeyScores), " has ",
                                                   v.scores.size(), " entries for ", n, " tokens"));
  }
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(v.scores[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: ", ToAbsl(kKeyScores), "[", i, "] is NaN"));
    }
  }
  if (v.token_types.empty()) {
    v.token_types.assign(n, TokenType::kNormal);
  } else if (v.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", ToAbsl(kKeyTokenType), " has ",
                                                   v.token_types.size(), " entries for ", n,
                                                   " tokens"));
  }
  for (size_t i = 0; i < n; ++i) {
    const auto t = static_cast<int32_t>(v.token_types[i]);
    if (t < 0 || t > static_cast<int32_t>(TokenType::kByte)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: token ", i, " has type ", t, ", not a token type (0..6)"));
    }
  }
  SWARM_RETURN_IF_ERROR(CheckSpecialId("bos_token_id", v.bos_id, n));
  SWARM_RETURN_IF_ERROR(CheckSpecialId("eos_token_id", v.eos_id, n));
  SWARM_RETURN_IF_ERROR(CheckSpecialId("eot_token_id", v.eot_id, n));
  SWARM_RETURN_IF_ERROR(CheckSpecialId("eom_token_id", v.eom_id, n));
  SWARM_RETURN_IF_ERROR(CheckSpecialId("unknown_token_id", v.unk_id, n));
  SWARM_RETURN_IF_ERROR(CheckSpecialId("padding_token_id", v.pad_id, n));
  SWARM_RETURN_IF_ERROR(CheckSpecialId("seperator_token_id", v.sep_id, n));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer(Vocabulary vocab) {
  SWARM_RETURN_IF_ERROR(ValidateVocabulary(vocab));
  switch (vocab.type) {
    case VocabType::kSpm:
      return MakeSpmTokenizer(std::move(vocab));
    case VocabType::kBpe:
      return MakeBpeTokenizer(std::move(vocab));
  }
  return absl::InvalidArgumentError("tokenizer: unknown vocabulary type");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  SWARM_ASSIGN_OR_RETURN(Vocabulary vocab, ReadVocabulary(file));
  return MakeTokenizer(std::move(vocab));
}

// --- VocabTokenizer ---

VocabTokenizer::VocabTokenizer(Vocabulary vocab) : vocab_(std::move(vocab)) {
  const auto n = static_cast<int32_t>(vocab_.tokens.size());
  pieces_.resize(n);
  token_to_id_.reserve(n);
  for (int32_t id = 0; id < n; ++id) token_to_id_[vocab_.tokens[id]] = id;

  for (int32_t id = 0; id < n; ++id) {
    const TokenType t = vocab_.token_types[id];
    // An empty special text would match everywhere; no real vocabulary has one.
    if ((t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUserDefined) &&
        !vocab_.tokens[id].empty()) {
      special_ids_.push_back(id);
    }
  }
  std::stable_sort(special_ids_.begin(), special_ids_.end(), [&](int32_t a, int32_t b) {
    return vocab_.tokens[a].size() > vocab_.tokens[b].size();
  });

  end_of_generation_.assign(n, false);
  for (int32_t id : {vocab_.eos_id, vocab_.eot_id, vocab_.eom_id}) {
    if (id >= 0) end_of_generation_[id] = true;
  }
  for (std::string_view text : kEndOfGenerationTexts) {
    const int32_t id = Lookup(text);
    if (id >= 0 && (vocab_.token_types[id] == TokenType::kControl ||
                    vocab_.token_types[id] == TokenType::kUserDefined)) {
      end_of_generation_[id] = true;
    }
  }
}

int32_t VocabTokenizer::Lookup(std::string_view text) const {
  const auto it = token_to_id_.find(ToAbsl(text));
  return it == token_to_id_.end() ? -1 : it->second;
}

bool VocabTokenizer::IsEndOfGeneration(int32_t id) const {
  return id >= 0 && id < n_vocab() && end_of_generation_[id];
}

std::string_view VocabTokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return vocab_.tokens[id];
}

bool VocabTokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return false;
  const TokenType t = vocab_.token_types[id];
  return t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUserDefined;
}

std::string VocabTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return pieces_[id];
}

std::vector<int32_t> VocabTokenizer::Encode(std::string_view text, bool add_bos,
                                            bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  if (text.empty()) return out;

  // Special-token pass: each special text, longest first, splits the remaining raw fragments.
  struct Fragment {
    int32_t token;  // -1 for raw text
    std::string_view text;
  };
  std::vector<Fragment> fragments = {{-1, text}};
  std::vector<Fragment> next;
  for (int32_t id : special_ids_) {
    if (!parse_special && vocab_.token_types[id] != TokenType::kUserDefined) continue;
    const std::string& special = vocab_.tokens[id];
    next.clear();
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = 0;
      for (size_t hit; (hit = f.text.find(special, pos)) != std::string_view::npos;) {
        if (hit > pos) next.push_back({-1, f.text.substr(pos, hit - pos)});
        next.push_back({id, {}});
        pos = hit + special.size();
      }
      if (pos < f.text.size()) next.push_back({-1, f.text.substr(pos)});
    }
    fragments.swap(next);
  }

  bool after_special = true;
  for (const Fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      EncodeText(f.text, after_special, out);
      after_special = false;
    }
  }
  return out;
}

std::string VocabTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  bool at_start = true;
  for (int32_t id : ids) AppendDecodedPiece(*this, id, at_start, out);
  return out;
}

void AppendDecodedPiece(const Tokenizer& tokenizer, int32_t id, bool& at_start, std::string& out) {
  const std::string piece = tokenizer.TokenBytes(id);
  if (tokenizer.IsSpecial(id)) {
    out += piece;
    at_start = true;
    return;
  }
  if (piece.empty()) return;
  const bool strip = at_start && tokenizer.strips_prefix_space() && piece[0] == ' ';
  out.append(piece, strip ? 1 : 0);
  at_start = false;
}

// --- StreamingDecoder ---

std::string StreamingDecoder::Push(int32_t id) {
  AppendDecodedPiece(tokenizer_, id, first_, pending_);
  std::string out;
  const size_t used = AppendSanitizedUtf8(pending_, /*final=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string StreamingDecoder::Finish() {
  std::string out;
  AppendSanitizedUtf8(pending_, /*final=*/true, out);
  pending_.clear();
  return out;
}

}  // namespace swarm::model
