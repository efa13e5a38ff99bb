// The reference tokenizations in shared/tokenizer-vectors (llama.cpp's test-tokenizer-0 files):
// every input must encode to exactly the expected ids and decode back to itself. Also the real
// 512-token SPM vocabulary of stories260K.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "model/tokenizer.h"
#include "support/files.h"

namespace swarm::model {
namespace {

const std::string kVectorDir = SWARM_SHARED_DIR "/tokenizer-vectors/";

using test_support::ReadFile;

// NAME.inp: each test string is followed by "\n__ggml_vocab_test__\n" (the newline before the
// separator line is not part of the string), so the file ends with a separator.
std::vector<std::string> ReadInputs(const std::string& path) {
  const std::string text = ReadFile(path);
  EXPECT_FALSE(text.empty()) << "cannot read " << path;
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(separator, pos)) != std::string::npos;) {
    inputs.push_back(text.substr(pos, hit - pos));
    pos = hit + separator.size();
  }
  EXPECT_EQ(pos, text.size()) << "text after the last separator in " << path;
  return inputs;
}

// NAME.out: one line of space-separated ids per input.
std::vector<std::vector<int32_t>> ReadExpected(const std::string& path) {
  const std::string text = ReadFile(path);
  EXPECT_FALSE(text.empty()) << "cannot read " << path;
  std::istringstream in(text);
  std::vector<std::vector<int32_t>> expected;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ids(line);
    std::vector<int32_t> row;
    for (int32_t id; ids >> id;) row.push_back(id);
    EXPECT_TRUE(ids.eof()) << "bad line in " << path << ": " << line;
    expected.push_back(row);
  }
  return expected;
}

std::unique_ptr<Tokenizer> Load(const std::string& path) {
  auto file = GgufFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return nullptr;
  auto tokenizer = Tokenizer::FromGguf(**file);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) return nullptr;
  return std::move(*tokenizer);
}

std::string Escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void CheckVectors(const std::string& name) {
  std::unique_ptr<Tokenizer> tokenizer = Load(kVectorDir + name);
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<std::string> inputs = ReadInputs(kVectorDir + name + ".inp");
  const std::vector<std::vector<int32_t>> expected = ReadExpected(kVectorDir + name + ".out");
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GE(inputs.size(), 40u);
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE("input " + std::to_string(i) + ": \"" + Escaped(inputs[i]) + "\"");
    const std::vector<int32_t> ids = tokenizer->Encode(inputs[i], false, false);
    EXPECT_EQ(ids, expected[i]);
    EXPECT_EQ(tokenizer->Decode(ids), inputs[i]);
  }
}

TEST(TokenizerVectors, LlamaSpm) { CheckVectors("ggml-vocab-llama-spm.gguf"); }

TEST(TokenizerVectors, Gpt2) { CheckVectors("ggml-vocab-gpt-2.gguf"); }

}  // namespace
}  // namespace swarm::model
