// Constrained decoding: the character automaton accepts exactly the JSON texts a schema allows
// (checked on hand-picked texts and by walking it to completion along its own shortest path),
// schemas with unsupported keywords are refused by name, and the in-process engine on stories260K,
// sampling at temperature 1 under the constraint, produces text that parses and validates (with an
// independent validator) for several schemas and seeds.
#include <string>
#include <vector>

#include "gateway/json_constraint.h"
#include "gateway/local_engine.h"
#include "gtest/gtest.h"
#include "json_schema_check.h"
#include "nlohmann/json.hpp"
#include "support/shared_model.h"

namespace swarm::gateway {
namespace {

using nlohmann::json;

const json kPerson = json::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer"},
    "address": {"type": "object",
                "properties": {"city": {"type": "string", "maxLength": 10},
                               "zip": {"type": "string", "minLength": 2, "maxLength": 5}},
                "required": ["city", "zip"], "additionalProperties": false},
    "pet": {"type": ["string", "null"], "maxLength": 8}
  },
  "required": ["name", "age", "address"],
  "additionalProperties": false
})");
const json kColor = json::parse(R"({
  "type": "object",
  "properties": {"color": {"enum": ["red", "green", "blue", 7, null]},
                 "ok": {"type": "boolean"}, "kind": {"const": "paint"}},
  "required": ["color", "ok", "kind"], "additionalProperties": false
})");
const json kNumbers = json::parse(R"({
  "type": "object",
  "properties": {"values": {"type": "array", "items": {"type": "integer"},
                            "minItems": 2, "maxItems": 5},
                 "scale": {"type": "number"}},
  "required": ["values", "scale"], "additionalProperties": false
})");

std::shared_ptr<const JsonGrammar> Compile(const json& schema) {
  auto g = JsonGrammar::FromSchema(schema);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : JsonGrammar::AnyObject();
}

bool Accepts(const JsonGrammar& g, const std::string& text) {
  JsonMatcher m(g);
  return m.Feed(text) && m.Complete();
}

bool IsPrefix(const JsonGrammar& g, const std::string& text) {
  JsonMatcher m(g);
  return m.Feed(text);
}

TEST(JsonMatcher, AcceptsExactlyTheSchemasTexts) {
  auto person = Compile(kPerson);
  EXPECT_TRUE(Accepts(*person, R"({"name":"Ann","age":3,"address":{"city":"X","zip":"12"}})"));
  const std::string spaced =
      R"({ "age": -30, "address": {"zip":"123","city":"Y"}, "name": "\u00e9\n", "pet": null})";
  EXPECT_TRUE(Accepts(*person, spaced));
  EXPECT_FALSE(Accepts(*person, R"({"name":"Ann","age":3})"));              // required missing
  EXPECT_FALSE(IsPrefix(*person, R"({"name":"Ann","name")"));               // repeated key
  EXPECT_FALSE(IsPrefix(*person, R"({"nick")"));                            // unknown key
  EXPECT_FALSE(IsPrefix(*person, R"({"age":3.5)"));                         // not an integer
  EXPECT_FALSE(IsPrefix(*person, R"({"age":01)"));                          // leading zero
  EXPECT_FALSE(IsPrefix(*person, R"({"name":"abcdefghijklm)"));             // maxLength 12
  EXPECT_FALSE(IsPrefix(*person, R"({"address":{"city":"c","zip":"1"})"));  // minLength 2
  EXPECT_FALSE(IsPrefix(*person, "{\"name\":\"a\nb"));                      // raw control char
  EXPECT_FALSE(IsPrefix(*person, "{\"name\":\"\xff"));                      // not UTF-8
  EXPECT_FALSE(IsPrefix(*person, R"({"name":"a"}x)"));
  EXPECT_FALSE(IsPrefix(*person, "{     \"name\""));  // whitespace run

  auto color = Compile(kColor);
  EXPECT_TRUE(Accepts(*color, R"({"kind":"paint","color":7,"ok":false})"));
  EXPECT_TRUE(Accepts(*color, R"({"color":null,"ok":true,"kind":"paint"})"));
  EXPECT_FALSE(IsPrefix(*color, R"({"color":"yellow")"));
  EXPECT_FALSE(IsPrefix(*color, R"({"color":70)"));
  EXPECT_FALSE(Accepts(*color, R"({"kind":"pain","color":7,"ok":true})"));

  auto numbers = Compile(kNumbers);
  EXPECT_TRUE(Accepts(*numbers, R"({"values":[1,-2,30],"scale":1.5e-3})"));
  EXPECT_FALSE(Accepts(*numbers, R"({"values":[1],"scale":1})"));  // minItems
  EXPECT_FALSE(IsPrefix(*numbers, R"({"values":[1,2,3,4,5,)"));    // maxItems
  EXPECT_FALSE(IsPrefix(*numbers, R"({"values":[1.0)"));

  auto any = JsonGrammar::AnyObject();
  EXPECT_TRUE(Accepts(*any, R"({"a":[1,{"b":null}],"c":"d","e":true})"));
  EXPECT_TRUE(Accepts(*any, "{}"));
  EXPECT_FALSE(IsPrefix(*any, "[1]"));  // json_object: an object
  EXPECT_FALSE(IsPrefix(*any, R"({"a":tru})"));
}

// From any state, MinRemaining() characters must be enough, and needed: following characters that
// lower it by one each reaches a complete value in exactly that many steps.
void WalkToCompletion(const JsonGrammar& g, const std::string& prefix) {
  SCOPED_TRACE(prefix);
  JsonMatcher m(g);
  ASSERT_TRUE(m.Feed(prefix));
  const int64_t need = m.MinRemaining();
  std::string path;
  for (int64_t step = 0; step < need; ++step) {
    bool moved = false;
    for (int c = 0x20; c < 0x7F && !moved; ++c) {
      JsonMatcher next = m;
      if (next.Feed(static_cast<unsigned char>(c)) && next.MinRemaining() == m.MinRemaining() - 1) {
        m = next;
        path += static_cast<char>(c);
        moved = true;
      }
    }
    ASSERT_TRUE(moved) << "stuck after " << path;
  }
  EXPECT_TRUE(m.Complete()) << prefix << path;
  EXPECT_EQ(m.MinRemaining(), 0);
}

TEST(JsonMatcher, MinRemainingIsExact) {
  auto person = Compile(kPerson);
  for (const char* p : {"", "{", R"({"na)", R"({"name":"ab)", R"({"name":"a","age":1)",
                        R"({"address":{)", R"({"age":-)", R"({"pet":)", R"({"name":"\u00)"}) {
    WalkToCompletion(*person, p);
  }
  auto numbers = Compile(kNumbers);
  for (const char* p : {"", R"({"values":[)", R"({"values":[1,)", R"({"scale":1e)"}) {
    WalkToCompletion(*numbers, p);
  }
  auto color = Compile(kColor);
  for (const char* p : {"", R"({"color":)", R"({"ok":t)"}) WalkToCompletion(*color, p);
  auto any = JsonGrammar::AnyObject();
  for (const char* p : {"", "{", R"({"a)", R"({"a":[)", R"({"a":{"b":)"}) {
    WalkToCompletion(*any, p);
  }
}

TEST(JsonGrammar, RefusesWhatItDoesNotSupportByName) {
  for (const char* keyword : {"pattern", "anyOf", "$ref", "minimum", "format", "uniqueItems"}) {
    json schema = {{"type", "object"},
                   {"properties", {{"x", {{"type", "string"}, {keyword, "a"}}}}}};
    auto g = JsonGrammar::FromSchema(schema);
    ASSERT_FALSE(g.ok()) << keyword;
    EXPECT_NE(g.status().message().find(std::string("'") + keyword + "'"), std::string::npos)
        << g.status();
  }
  for (const char* bad : {R"({"type": "thing"})", R"({"type": 3})", R"([1])",
                          R"({"properties": {"a": {}}, "required": ["b"]})", R"({"enum": []})",
                          R"({"minItems": -1})", R"({"minItems": 3, "maxItems": 2})"}) {
    EXPECT_FALSE(JsonGrammar::FromSchema(json::parse(bad)).ok()) << bad;
  }
  json deep = json::object();
  for (int i = 0; i < 100; ++i) deep = {{"type", "array"}, {"items", deep}};
  EXPECT_FALSE(JsonGrammar::FromSchema(deep).ok());
}

class ConstrainedGeneration : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LocalEngineOptions options;
    auto engine = LocalEngine::Load(test_support::kSharedModel, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = engine->release();
  }
  static void TearDownTestSuite() { delete engine_; }

  // n choices under `grammar`; the texts.
  static std::vector<std::string> Generate(std::shared_ptr<const JsonGrammar> grammar,
                                           uint64_t seed, int32_t n, int32_t max_tokens) {
    const model::Tokenizer& tok = engine_->tokenizer();
    std::vector<std::unique_ptr<JsonConstraint>> owned;
    GenerationRequest request;
    request.prompt = tok.Encode("Once upon a time", tok.add_bos(), false);
    request.max_tokens = max_tokens;
    request.sampling.temperature = 1.0f;
    request.sampling.top_k = 0;
    request.sampling.top_p = 1.0f;
    request.sampling.min_p = 0.0f;
    request.sampling.seed = seed;
    request.n = n;
    for (int32_t i = 0; i < n; ++i) {
      owned.push_back(std::make_unique<JsonConstraint>(grammar, tok, max_tokens));
      request.constraints.push_back(owned.back().get());
    }
    std::vector<std::vector<int32_t>> tokens(n);
    absl::Status s = engine_->Generate(request, [&](const GenerationEvent& e) {
      tokens[e.index].push_back(e.token);
      return !owned[e.index]->complete();
    });
    EXPECT_TRUE(s.ok()) << s;
    std::vector<std::string> texts;
    for (int32_t i = 0; i < n; ++i) {
      EXPECT_TRUE(owned[i]->complete()) << tok.Decode(tokens[i]);
      texts.push_back(tok.Decode(tokens[i]));
    }
    return texts;
  }

  static LocalEngine* engine_;
};
LocalEngine* ConstrainedGeneration::engine_ = nullptr;

TEST_F(ConstrainedGeneration, OutputParsesAndValidates) {
  for (const json* schema : {&kPerson, &kColor, &kNumbers}) {
    auto grammar = Compile(*schema);
    for (uint64_t seed : {1, 2}) {
      for (const std::string& text : Generate(grammar, seed, /*n=*/3, /*max_tokens=*/120)) {
        SCOPED_TRACE(text);
        json v = json::parse(text, nullptr, false);
        ASSERT_FALSE(v.is_discarded());
        EXPECT_EQ(test_schema::Check(v, *schema), "");
      }
    }
  }
  // json_object: any object, closed in time even with few tokens to spare.
  for (const std::string& text : Generate(JsonGrammar::AnyObject(), 5, 2, 24)) {
    SCOPED_TRACE(text);
    json v = json::parse(text, nullptr, false);
    ASSERT_FALSE(v.is_discarded());
    EXPECT_TRUE(v.is_object());
  }
}

TEST_F(ConstrainedGeneration, ATightBudgetStillClosesTheValue) {
  // A little more room than the shortest person needs: the value must still be closed in time.
  auto grammar = Compile(kPerson);
  for (const std::string& text : Generate(grammar, 9, 2, 60)) {
    json v = json::parse(text, nullptr, false);
    ASSERT_FALSE(v.is_discarded()) << text;
    EXPECT_EQ(test_schema::Check(v, kPerson), "") << text;
  }
}

}  // namespace
}  // namespace swarm::gateway
