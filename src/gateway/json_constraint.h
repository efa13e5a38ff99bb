// Constrained decoding for response_format json_object / json_schema: a JSON-schema subset compiled
// to a pushdown automaton over characters (JsonGrammar, immutable, shared by a request's choices),
// a character-level matcher over it (JsonMatcher, a cheap copyable value), and the TokenConstraint
// that masks every token whose bytes would not keep the output a valid prefix or could no longer be
// completed within max_tokens (JsonConstraint, one per choice, same thread as its sampler).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/token_constraint.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway {

class JsonGrammar {
 public:
  // Any JSON object (response_format json_object).
  static std::shared_ptr<const JsonGrammar> AnyObject();
  // Keywords: type (one or a list of object, array, string, number, integer, boolean, null),
  // properties, required, additionalProperties, enum, const, items, minItems, maxItems,
  // minLength, maxLength; annotations (title, description, $schema, $comment, examples, default)
  // are ignored. Anything else is InvalidArgument naming the keyword and where it is. Declared
  // properties are the only keys produced, in any order (a valid subset when additionalProperties
  // is not false).
  static absl::StatusOr<std::shared_ptr<const JsonGrammar>> FromSchema(
      const nlohmann::json& schema);

  enum Type : uint8_t {
    kObject = 1,
    kArray = 2,
    kString = 4,
    kNumber = 8,
    kInteger = 16,
    kBoolean = 32,
    kNull = 64,
    kAnyType = 127,
  };
  struct Node {
    uint8_t types = kAnyType;
    std::vector<std::string> literals;  // enum/const values as JSON text; non-empty: only these
    // Object: the declared properties (name, node) and their keys as JSON text ("\"name\"").
    std::vector<std::pair<std::string, int32_t>> properties;
    std::vector<std::string> key_texts;
    uint64_t required = 0;     // bit i: properties[i] is required
    int32_t free_values = -1;  // >= 0: no declared properties, any key with values of this node
    int32_t items = 0;         // array item node
    int64_t min_items = 0, max_items = INT64_MAX;
    int64_t min_length = 0, max_length = INT64_MAX;  // string, in characters
    int64_t min_chars = 1;                           // the shortest JSON text of this node
  };
  const Node& node(int32_t i) const { return nodes_[static_cast<size_t>(i)]; }
  int32_t root() const { return root_; }

 private:
  friend class SchemaCompiler;
  std::vector<Node> nodes_;  // nodes_[0] is "any value"
  int32_t root_ = 0;
};

// Where a JSON text is, as far as it got. Feed() returns false (and leaves the state unusable)
// when the character cannot continue a text that the grammar accepts.
class JsonMatcher {
 public:
  explicit JsonMatcher(const JsonGrammar& grammar);
  bool Feed(unsigned char c);
  bool Feed(std::string_view bytes);
  // The value is whole (nothing more may follow).
  bool Complete() const;
  // The fewest characters that complete the value from here.
  int64_t MinRemaining() const;

 private:
  enum class Kind : uint8_t { kValue, kLiteral, kString, kNumber, kObject, kArray };
  enum LiteralList : uint8_t { kNodeLiterals, kKeys, kBooleans, kNullLiteral };
  struct Frame {
    Kind kind = Kind::kValue;
    uint8_t phase = 0;    // object/array: where in the syntax; number: its state; string: escape
    uint8_t list = 0;     // literal: which LiteralList
    uint8_t pending = 0;  // string: \u hex digits or UTF-8 continuation bytes still due
    bool is_key = false;  // literal/string: an object key
    int32_t node = 0;
    int32_t key = -1;   // object: the property whose value comes next (-1: a free key)
    int64_t count = 0;  // array: items begun; string: characters; literal: bytes matched
    uint64_t bits = 0;  // object: properties seen; literal: candidates still possible
  };
  const std::vector<std::string>& Literals(const Frame& f) const;
  bool StartValue(Frame& f, unsigned char c);
  bool Pop();  // the top frame finished
  bool Whitespace();
  int64_t ObjectRest(const JsonGrammar::Node& n, uint64_t seen, int32_t except) const;
  int64_t PropertyCost(const JsonGrammar::Node& n, size_t i) const;

  const JsonGrammar* grammar_;
  std::vector<Frame> stack_;
  int32_t whitespace_run_ = 0;
};

class JsonConstraint final : public model::TokenConstraint {
 public:
  // max_tokens: the choice's token budget; tokens that would leave a value that cannot be closed
  // within it are masked too (while any other token is allowed).
  JsonConstraint(std::shared_ptr<const JsonGrammar> grammar, const model::Tokenizer& tokenizer,
                 int64_t max_tokens);
  void Mask(std::span<float> logits) override;
  void Accept(int32_t token) override;
  bool complete() const { return matcher_.Complete(); }

 private:
  std::shared_ptr<const JsonGrammar> grammar_;
  const model::Tokenizer& tokenizer_;
  std::vector<std::string> bytes_;  // [n_vocab] each token's text
  JsonMatcher matcher_;
  int64_t tokens_left_;
};

}  // namespace swarm::gateway
