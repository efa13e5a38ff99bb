#include "gateway/json_constraint.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace swarm::gateway {

using nlohmann::json;

namespace {

constexpr int32_t kMaxWhitespaceRun = 2;  // between tokens; more only wastes the token budget
constexpr int64_t kMaxNumberDigits = 15;  // digits a number may have (exactly representable)
constexpr int kMaxDepth = 32;
constexpr size_t kMaxNodes = 4096;
constexpr size_t kMaxAlternatives = 64;  // enum values, properties: a 64-bit set

bool IsWhitespace(unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsHex(unsigned char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int64_t SatAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b ? std::numeric_limits<int64_t>::max() : a + b;
}

// Both non-negative.
int64_t SatMul(int64_t a, int64_t b) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) {
    return std::numeric_limits<int64_t>::max();
  }
  return a * b;
}

// Longer than any budget: min_chars is capped here so that sums of a few stay far from overflow.
constexpr int64_t kMaxMinChars = int64_t{1} << 40;

const std::vector<std::string>& Booleans() {
  static const auto* v = new std::vector<std::string>{"true", "false"};
  return *v;
}
const std::vector<std::string>& NullLiteral() {
  static const auto* v = new std::vector<std::string>{"null"};
  return *v;
}

}  // namespace

// Builds a JsonGrammar from a schema, checking every keyword.
class SchemaCompiler {
 public:
  absl::StatusOr<std::shared_ptr<const JsonGrammar>> Compile(const json& schema) {
    auto g = std::make_shared<JsonGrammar>();
    grammar_ = g.get();
    grammar_->nodes_.push_back(AnyNode());
    auto root = Node(schema, "schema", 0);
    if (!root.ok()) return root.status();
    grammar_->root_ = *root;
    return std::shared_ptr<const JsonGrammar>(std::move(g));
  }

  static JsonGrammar::Node AnyNode() {
    JsonGrammar::Node any;
    any.free_values = 0;
    any.items = 0;
    any.min_chars = 1;  // 0
    return any;
  }

 private:
  absl::Status Error(const std::string& where, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
  }

  absl::StatusOr<int64_t> Count(const json& v, const std::string& where) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
      return Error(where, "expected a non-negative integer");
    }
    return static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), INT64_MAX));
  }

  absl::StatusOr<int32_t> Node(const json& s, const std::string& where, int depth) {
    if (depth > kMaxDepth) return Error(where, "nested too deeply");
    if (grammar_->nodes_.size() >= kMaxNodes) return Error(where, "too many sub-schemas");
    if (s.is_boolean() && s.get<bool>()) return 0;  // `true`: anything
    if (!s.is_object()) return Error(where, "a schema must be an object");
    JsonGrammar::Node n;
    n.items = 0;
    bool typed = false;
    for (const auto& [key, value] : s.items()) {
      const std::string at = absl::StrCat(where, ".", key);
      if (key == "title" || key == "description" || key == "$schema" || key == "$comment" ||
          key == "examples" || key == "default" || key == "$id") {
        continue;
      } else if (key == "type") {
        std::vector<std::string> names;
        if (value.is_string()) {
          names.push_back(value.get<std::string>());
        } else if (value.is_array() && !value.empty()) {
          for (const json& t : value) {
            if (!t.is_string()) return Error(at, "expected a type name");
            names.push_back(t.get<std::string>());
          }
        } else {
          return Error(at, "expected a type name or a list of them");
        }
        n.types = 0;
        typed = true;
        for (const std::string& t : names) {
          if (t == "object")
            n.types |= JsonGrammar::kObject;
          else if (t == "array")
            n.types |= JsonGrammar::kArray;
          else if (t == "string")
            n.types |= JsonGrammar::kString;
          else if (t == "number")
            n.types |= JsonGrammar::kNumber;
          else if (t == "integer")
            n.types |= JsonGrammar::kInteger;
          else if (t == "boolean")
            n.types |= JsonGrammar::kBoolean;
          else if (t == "null")
            n.types |= JsonGrammar::kNull;
          else
            return Error(at, absl::StrCat("unknown type '", t, "'"));
        }
      } else if (key == "enum" || key == "const") {
        if (key == "enum" && (!value.is_array() || value.empty())) {
          return Error(at, "expected a non-empty array");
        }
        const std::vector<json> values =
            key == "enum" ? value.get<std::vector<json>>() : std::vector<json>{value};
        if (values.size() > kMaxAlternatives) {
          return Error(at, absl::StrCat("at most ", kMaxAlternatives, " values"));
        }
        std::vector<std::string> literals;
        for (const json& v : values) {
          literals.push_back(v.dump(-1, ' ', false, json::error_handler_t::replace));
        }
        if (!n.literals.empty()) {  // enum and const together: what both allow
          std::vector<std::string> both;
          for (const std::string& l : literals) {
            if (std::find(n.literals.begin(), n.literals.end(), l) != n.literals.end()) {
              both.push_back(l);
            }
          }
          if (both.empty()) return Error(at, "no value satisfies both enum and const");
          literals = std::move(both);
        }
        n.literals = std::move(literals);
      } else if (key == "properties") {
        if (!value.is_object()) return Error(at, "expected an object");
        if (value.size() > kMaxAlternatives) {
          return Error(at, absl::StrCat("at most ", kMaxAlternatives, " properties"));
        }
        for (const auto& [name, sub] : value.items()) {
          auto child = Node(sub, absl::StrCat(at, ".", name), depth + 1);
          if (!child.ok()) return child.status();
          n.properties.emplace_back(name, *child);
          n.key_texts.push_back(json(name).dump(-1, ' ', false, json::error_handler_t::replace));
        }
      } else if (key == "required") {
        if (!value.is_array()) return Error(at, "expected an array of property names");
      } else if (key == "additionalProperties") {
        if (value.is_boolean()) continue;
        auto child = Node(value, at, depth + 1);
        if (!child.ok()) return child.status();
        n.free_values = *child;
      } else if (key == "items") {
        auto child = Node(value, at, depth + 1);
        if (!child.ok()) return child.status();
        n.items = *child;
      } else if (key == "minItems" || key == "maxItems" || key == "minLength" ||
                 key == "maxLength") {
        auto c = Count(value, at);
        if (!c.ok()) return c.status();
        (key == "minItems"    ? n.min_items
         : key == "maxItems"  ? n.max_items
         : key == "minLength" ? n.min_length
                              : n.max_length) = *c;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("the JSON-schema keyword '", key, "' (at ", where,
                         ") is not supported; supported: type, properties, required, "
                         "additionalProperties, enum, const, items, minItems, maxItems, "
                         "minLength, maxLength"));
      }
    }
    if (auto it = s.find("required"); it != s.end()) {
      for (const json& r : *it) {
        if (!r.is_string()) return Error(where + ".required", "expected property names");
        const std::string name = r.get<std::string>();
        size_t i = 0;
        while (i < n.properties.size() && n.properties[i].first != name) ++i;
        if (i == n.properties.size()) {
          return Error(where + ".required",
                       absl::StrCat("'", name, "' is required but not among the properties"));
        }
        n.required |= uint64_t{1} << i;
      }
    }
    if (!typed && n.literals.empty()) {
      // Untyped: what its keywords imply, else anything.
      if (!n.properties.empty()) n.types = JsonGrammar::kObject;
    }
    if (!n.properties.empty()) {
      n.free_values = -1;
    } else if (n.free_values < 0) {
      const auto ap = s.find("additionalProperties");
      if (ap == s.end() || !ap->is_boolean() || ap->get<bool>()) n.free_values = 0;
    }
    if (n.min_items > n.max_items) return Error(where, "minItems exceeds maxItems");
    if (n.min_length > n.max_length) return Error(where, "minLength exceeds maxLength");
    if (n.types == 0) return Error(where, "no type");
    n.min_chars = std::min(MinChars(n), kMaxMinChars);
    grammar_->nodes_.push_back(std::move(n));
    return static_cast<int32_t>(grammar_->nodes_.size() - 1);
  }

  int64_t MinChars(const JsonGrammar::Node& n) const {
    if (!n.literals.empty()) {
      int64_t m = INT64_MAX;
      for (const std::string& l : n.literals) m = std::min<int64_t>(m, l.size());
      return m;
    }
    int64_t m = INT64_MAX;
    if (n.types & (JsonGrammar::kNumber | JsonGrammar::kInteger)) m = 1;
    if (n.types & (JsonGrammar::kBoolean | JsonGrammar::kNull)) m = std::min<int64_t>(m, 4);
    if (n.types & JsonGrammar::kString) m = std::min(m, SatAdd(2, n.min_length));
    if (n.types & JsonGrammar::kArray) {
      const int64_t item = grammar_->nodes_[n.items].min_chars;
      int64_t a = 2;
      for (int64_t i = 0; i < n.min_items && a < (int64_t{1} << 40); ++i) {
        a = SatAdd(a, SatAdd(item, i > 0 ? 1 : 0));
      }
      m = std::min(m, a);
    }
    if (n.types & JsonGrammar::kObject) {
      int64_t o = 2;
      int k = 0;
      for (size_t i = 0; i < n.properties.size(); ++i) {
        if (!(n.required >> i & 1)) continue;
        o = SatAdd(o, SatAdd(static_cast<int64_t>(n.key_texts[i].size()) + 1 + (k++ > 0 ? 1 : 0),
                             grammar_->nodes_[n.properties[i].second].min_chars));
      }
      m = std::min(m, o);
    }
    return m;
  }

  JsonGrammar* grammar_ = nullptr;
};

std::shared_ptr<const JsonGrammar> JsonGrammar::AnyObject() {
  auto g = std::make_shared<JsonGrammar>();
  g->nodes_.push_back(SchemaCompiler::AnyNode());
  Node object = SchemaCompiler::AnyNode();
  object.types = kObject;
  object.min_chars = 2;
  g->nodes_.push_back(object);
  g->root_ = 1;
  return g;
}

absl::StatusOr<std::shared_ptr<const JsonGrammar>> JsonGrammar::FromSchema(const json& schema) {
  SchemaCompiler compiler;
  return compiler.Compile(schema);
}

// ---- JsonMatcher

JsonMatcher::JsonMatcher(const JsonGrammar& grammar) : grammar_(&grammar) {
  Frame root;
  root.kind = Kind::kValue;
  root.node = grammar.root();
  stack_.push_back(root);
}

const std::vector<std::string>& JsonMatcher::Literals(const Frame& f) const {
  switch (f.list) {
    case kNodeLiterals:
      return grammar_->node(f.node).literals;
    case kKeys:
      return grammar_->node(f.node).key_texts;
    case kBooleans:
      return Booleans();
    default:
      return NullLiteral();
  }
}

bool JsonMatcher::Whitespace() {
  if (whitespace_run_ >= kMaxWhitespaceRun) return false;
  ++whitespace_run_;
  return true;
}

bool JsonMatcher::Feed(std::string_view bytes) {
  for (char c : bytes) {
    if (!Feed(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Replaces a kValue frame by the frame of the value that `c` begins; false if none may.
bool JsonMatcher::StartValue(Frame& f, unsigned char c) {
  const JsonGrammar::Node& n = grammar_->node(f.node);
  Frame v;
  v.node = f.node;
  if (!n.literals.empty()) {
    v.kind = Kind::kLiteral;
    v.list = kNodeLiterals;
  } else if (c == '{' && (n.types & JsonGrammar::kObject)) {
    v.kind = Kind::kObject;
    f = v;
    return true;
  } else if (c == '[' && (n.types & JsonGrammar::kArray)) {
    v.kind = Kind::kArray;
    f = v;
    return true;
  } else if (c == '"' && (n.types & JsonGrammar::kString)) {
    v.kind = Kind::kString;
    f = v;
    return true;
  } else if ((c == '-' || IsDigit(c)) &&
             (n.types & (JsonGrammar::kNumber | JsonGrammar::kInteger))) {
    v.kind = Kind::kNumber;
  } else if ((c == 't' || c == 'f') && (n.types & JsonGrammar::kBoolean)) {
    v.kind = Kind::kLiteral;
    v.list = kBooleans;
  } else if (c == 'n' && (n.types & JsonGrammar::kNull)) {
    v.kind = Kind::kLiteral;
    v.list = kNullLiteral;
  } else {
    return false;
  }
  if (v.kind == Kind::kLiteral) {
    const size_t n_literals = Literals(v).size();
    v.bits = n_literals >= 64 ? ~uint64_t{0} : (uint64_t{1} << n_literals) - 1;
  }
  f = v;
  return Feed(c);  // the literal or number consumes c
}

bool JsonMatcher::Pop() {
  const Frame done = stack_.back();
  stack_.pop_back();
  if (stack_.empty()) return true;
  Frame& parent = stack_.back();
  if (parent.kind == Kind::kObject && done.is_key) {
    parent.phase = 1;  // ':' next
    if (done.kind == Kind::kLiteral) {
      // The one candidate left is the key.
      const int i = __builtin_ctzll(done.bits);
      parent.key = i;
      parent.bits |= uint64_t{1} << i;
    } else {
      parent.key = -1;
    }
  }
  return true;
}

bool JsonMatcher::Feed(unsigned char c) {
  while (true) {
    if (stack_.empty()) return false;  // the value is complete: nothing may follow
    Frame& f = stack_.back();
    const JsonGrammar::Node& n = grammar_->node(f.node);
    switch (f.kind) {
      case Kind::kValue:
        if (IsWhitespace(c)) return Whitespace();
        whitespace_run_ = 0;
        return StartValue(f, c);

      case Kind::kLiteral: {
        const std::vector<std::string>& lits = Literals(f);
        uint64_t next = 0, complete = 0;
        for (size_t i = 0; i < lits.size() && i < 64; ++i) {
          if (!(f.bits >> i & 1)) continue;
          if (static_cast<size_t>(f.count) == lits[i].size()) complete |= uint64_t{1} << i;
          if (static_cast<size_t>(f.count) < lits[i].size() &&
              static_cast<unsigned char>(lits[i][f.count]) == c) {
            next |= uint64_t{1} << i;
          }
        }
        if (next == 0) {
          // A finished literal ("1" of enum [1, 12]) ends here; c belongs to the parent.
          if (complete == 0) return false;
          f.bits = complete & (~complete + 1);
          Pop();
          continue;
        }
        f.bits = next;
        ++f.count;
        // Finished and nothing longer possible: end now, so the parent knows at once.
        bool all_done = true;
        for (size_t i = 0; i < lits.size() && i < 64; ++i) {
          if ((next >> i & 1) && static_cast<size_t>(f.count) < lits[i].size()) all_done = false;
        }
        if (all_done) {
          f.bits = next & (~next + 1);
          Pop();
        }
        return true;
      }

      case Kind::kString: {
        if (f.pending > 0 && f.phase == 2) {  // \uXXXX
          if (!IsHex(c)) return false;
          if (--f.pending == 0) {
            f.phase = 0;
            ++f.count;
          }
          return true;
        }
        if (f.pending > 0) {  // UTF-8 continuation
          if ((c & 0xC0) != 0x80) return false;
          --f.pending;
          return true;
        }
        if (f.phase == 1) {  // after a backslash
          if (c == 'u') {
            f.phase = 2;
            f.pending = 4;
            return true;
          }
          if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' &&
              c != 't') {
            return false;
          }
          f.phase = 0;
          ++f.count;
          return true;
        }
        const int64_t max_length = f.is_key ? INT64_MAX : n.max_length;
        const int64_t min_length = f.is_key ? 0 : n.min_length;
        if (c == '"') {
          if (f.count < min_length) return false;
          Pop();
          return true;
        }
        if (c < 0x20 || c == 0x7F || f.count >= max_length) return false;
        if (c == '\\') {
          f.phase = 1;
          return true;
        }
        if (c >= 0x80) {
          if (c >= 0xC2 && c <= 0xDF)
            f.pending = 1;
          else if (c >= 0xE0 && c <= 0xEF)
            f.pending = 2;
          else if (c >= 0xF0 && c <= 0xF4)
            f.pending = 3;
          else
            return false;
        }
        ++f.count;
        return true;
      }

      case Kind::kNumber: {
        // phase: 0 start, 1 after '-', 2 after a leading 0, 3 integer digits, 4 after '.',
        // 5 fraction digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits.
        const bool integer_only = !(n.types & JsonGrammar::kNumber);
        const bool digit_ok = IsDigit(c) && f.count < kMaxNumberDigits;
        auto digit = [&](uint8_t phase) {
          ++f.count;
          f.phase = phase;
          return true;
        };
        switch (f.phase) {
          case 0:
            if (c == '-') {
              f.phase = 1;
              return true;
            }
            [[fallthrough]];
          case 1:
            if (c == '0') return digit(2);
            if (digit_ok) return digit(3);
            return false;
          case 2:
          case 3:
            if (f.phase == 3 && digit_ok) return digit(3);
            if (!integer_only && c == '.') {
              f.phase = 4;
              return true;
            }
            if (!integer_only && (c == 'e' || c == 'E')) {
              f.phase = 6;
              return true;
            }
            break;
          case 4:
            return digit_ok && digit(5);
          case 5:
            if (digit_ok) return digit(5);
            if (c == 'e' || c == 'E') {
              f.phase = 6;
              return true;
            }
            break;
          case 6:
            if (c == '+' || c == '-') {
              f.phase = 7;
              return true;
            }
            return digit_ok && digit(8);
          case 7:
            return digit_ok && digit(8);
          case 8:
            if (digit_ok) return digit(8);
            break;
        }
        // Not part of the number: it ends here if it can.
        if (f.phase != 2 && f.phase != 3 && f.phase != 5 && f.phase != 8) return false;
        Pop();
        continue;
      }

      case Kind::kObject: {
        const bool have_free = n.free_values >= 0;
        const uint64_t all =
            n.properties.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << n.properties.size()) - 1;
        const bool more_keys = have_free || (f.bits & all) != all;
        const bool may_close = (n.required & ~f.bits) == 0;
        if (IsWhitespace(c)) return Whitespace();
        whitespace_run_ = 0;
        switch (f.phase) {
          case 0:  // after '{'
          case 4:  // after ','
            if (c == '}' && f.phase == 0 && may_close) {
              Pop();
              return true;
            }
            if (c != '"' || !more_keys) return false;
            {
              Frame k;
              k.is_key = true;
              k.node = f.node;
              if (have_free) {
                k.kind = Kind::kString;
                stack_.push_back(k);
                return true;
              }
              k.kind = Kind::kLiteral;
              k.list = kKeys;
              k.bits = all & ~f.bits;
              stack_.push_back(k);
              continue;  // the key literal consumes the quote
            }
          case 1:  // after a key
            if (c != ':') return false;
            f.phase = 2;
            return true;
          case 2: {  // after ':'
            Frame v;
            v.kind = Kind::kValue;
            v.node = f.key >= 0 ? n.properties[f.key].second : n.free_values;
            f.phase = 3;
            stack_.push_back(v);
            continue;
          }
          case 3:  // after a value
            if (c == ',' && more_keys) {
              f.phase = 4;
              return true;
            }
            if (c == '}' && may_close) {
              Pop();
              return true;
            }
            return false;
        }
        return false;
      }

      case Kind::kArray: {
        if (IsWhitespace(c)) return Whitespace();
        whitespace_run_ = 0;
        if (f.phase == 1) {  // after an item
          if (c == ',' && f.count < n.max_items) {
            f.phase = 2;
            return true;
          }
          if (c == ']' && f.count >= n.min_items) {
            Pop();
            return true;
          }
          return false;
        }
        if (f.phase == 0 && c == ']' && n.min_items == 0) {
          Pop();
          return true;
        }
        if (f.phase == 0 && n.max_items == 0) return false;
        Frame v;
        v.kind = Kind::kValue;
        v.node = n.items;
        f.phase = 1;
        ++f.count;
        stack_.push_back(v);
        continue;
      }
    }
    return false;
  }
}

bool JsonMatcher::Complete() const {
  if (stack_.empty()) return true;
  // A top-level number ends only at a character that is not part of it: take it as whole.
  const Frame& f = stack_.back();
  return stack_.size() == 1 && f.kind == Kind::kNumber &&
         (f.phase == 2 || f.phase == 3 || f.phase == 5 || f.phase == 8);
}

int64_t JsonMatcher::PropertyCost(const JsonGrammar::Node& n, size_t i) const {
  // "key":value
  return static_cast<int64_t>(n.key_texts[i].size()) + 1 +
         grammar_->node(n.properties[i].second).min_chars;
}

// The fewest characters after a value of an object whose `seen` properties are done: the
// required ones still missing, each after a comma, then '}'. `except`: a property about to come.
int64_t JsonMatcher::ObjectRest(const JsonGrammar::Node& n, uint64_t seen, int32_t except) const {
  int64_t rest = 1;
  for (size_t i = 0; i < n.properties.size(); ++i) {
    if ((n.required >> i & 1) && !(seen >> i & 1) && static_cast<int32_t>(i) != except) {
      rest = SatAdd(rest, 1 + PropertyCost(n, i));
    }
  }
  return rest;
}

int64_t JsonMatcher::MinRemaining() const {
  int64_t total = 0;
  for (size_t depth = stack_.size(); depth-- > 0;) {
    const Frame& f = stack_[depth];
    const JsonGrammar::Node& n = grammar_->node(f.node);
    int64_t need = 0;
    switch (f.kind) {
      case Kind::kValue:
        need = n.min_chars;
        break;
      case Kind::kLiteral: {
        const std::vector<std::string>& lits = Literals(f);
        need = INT64_MAX;
        for (size_t i = 0; i < lits.size() && i < 64; ++i) {
          if (!(f.bits >> i & 1)) continue;
          int64_t c = static_cast<int64_t>(lits[i].size()) - f.count;
          if (f.is_key) {
            // The rest of this key, ':', its value, then the object's rest without it.
            const Frame& object = stack_[depth - 1];
            c = SatAdd(c, 1 + grammar_->node(n.properties[i].second).min_chars);
            c = SatAdd(c, ObjectRest(n, object.bits, static_cast<int32_t>(i)));
          }
          need = std::min(need, c);
        }
        break;
      }
      case Kind::kString:
        if (f.is_key) {
          need = 1 + f.pending + (f.phase == 1 ? 1 : 0);
          need += 1 + grammar_->node(n.free_values).min_chars + 1;  // :value}
        } else {
          need = SatAdd(1 + f.pending + (f.phase == 1 ? 1 : 0),
                        std::max<int64_t>(0, n.min_length - f.count));
        }
        break;
      case Kind::kNumber:
        need = (f.phase == 2 || f.phase == 3 || f.phase == 5 || f.phase == 8) ? 0 : 1;
        break;
      case Kind::kObject: {
        const bool key_child = depth + 1 < stack_.size() && stack_[depth + 1].is_key;
        if (key_child) break;  // counted by the key
        switch (f.phase) {
          case 0:
          case 4: {
            const uint64_t missing = n.required & ~f.bits;
            if (missing != 0) {
              need = ObjectRest(n, f.bits, -1) - 1;  // as if after a value, less one comma
            } else if (f.phase == 0) {
              need = 1;
            } else {
              need = n.free_values >= 0 ? 4 + grammar_->node(n.free_values).min_chars : INT64_MAX;
              for (size_t i = 0; i < n.properties.size(); ++i) {
                if (!(f.bits >> i & 1)) need = std::min(need, PropertyCost(n, i) + 1);
              }
            }
            break;
          }
          case 1:
          case 2: {
            const int64_t value =
                grammar_->node(f.key >= 0 ? n.properties[f.key].second : n.free_values).min_chars;
            need = SatAdd((f.phase == 1 ? 1 : 0) + value, ObjectRest(n, f.bits, -1));
            break;
          }
          default:
            need = ObjectRest(n, f.bits, -1);
        }
        break;
      }
      case Kind::kArray: {
        const int64_t item = grammar_->node(n.items).min_chars;
        if (f.phase == 0) {
          const int64_t k = n.min_items;
          need = k == 0 ? 1 : SatMul(k, item + 1);
        } else {
          int64_t k = std::max<int64_t>(0, n.min_items - f.count);
          if (f.phase == 2) k = std::max<int64_t>(1, k);
          need = SatAdd(SatMul(k, item + 1), f.phase == 2 ? 0 : 1);
        }
        break;
      }
    }
    total = SatAdd(total, need);
  }
  return total;
}

// ---- JsonConstraint

JsonConstraint::JsonConstraint(std::shared_ptr<const JsonGrammar> grammar,
                               const model::Tokenizer& tokenizer, int64_t max_tokens)
    : grammar_(std::move(grammar)),
      tokenizer_(tokenizer),
      matcher_(*grammar_),
      tokens_left_(max_tokens) {
  bytes_.resize(static_cast<size_t>(tokenizer.n_vocab()));
  for (int32_t id = 0; id < tokenizer.n_vocab(); ++id) {
    if (!tokenizer.IsSpecial(id) && !tokenizer.IsEndOfGeneration(id)) {
      bytes_[id] = tokenizer.TokenBytes(id);
    }
  }
}

void JsonConstraint::Mask(std::span<float> logits) {
  constexpr float kBanned = -std::numeric_limits<float>::infinity();
  const bool complete = matcher_.Complete();
  std::vector<uint8_t> valid(logits.size(), 0);
  bool any_in_budget = false;
  for (size_t id = 0; id < logits.size(); ++id) {
    if (id >= bytes_.size()) continue;
    if (tokenizer_.IsEndOfGeneration(static_cast<int32_t>(id))) {
      valid[id] = complete ? 2 : 0;
      any_in_budget |= complete;
      continue;
    }
    if (complete || bytes_[id].empty() || logits[id] == kBanned) continue;
    JsonMatcher next = matcher_;
    if (!next.Feed(bytes_[id])) continue;
    // Every later token can add at least one character (single-character tokens exist).
    const bool in_budget = next.MinRemaining() <= tokens_left_ - 1;
    valid[id] = in_budget ? 2 : 1;
    any_in_budget |= in_budget;
  }
  const uint8_t need = any_in_budget ? 2 : 1;
  for (size_t id = 0; id < logits.size(); ++id) {
    if (valid[id] < need) logits[id] = kBanned;
  }
}

void JsonConstraint::Accept(int32_t token) {
  --tokens_left_;
  if (token >= 0 && static_cast<size_t>(token) < bytes_.size()) matcher_.Feed(bytes_[token]);
}

}  // namespace swarm::gateway
