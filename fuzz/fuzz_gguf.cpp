// libFuzzer target: a GGUF file from anyone (model/gguf.h), parsed from memory with the same
// parser Open() uses, then read the way `swarm serve` and `swarm inspect` read it: every metadata
// value through every typed getter, every tensor's data span, the model configuration and the
// tokenizer. Spans the parser accepted must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "model/gguf.h"
#include "model/model_config.h"
#include "model/tokenizer.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_gguf: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = swarm::model::GgufFile::FromBytes(std::span<const uint8_t>(data, size));
  if (!file.ok()) return 0;
  const swarm::model::GgufFile& f = **file;

  for (const auto& [key, value] : f.metadata()) {
    Check(f.Find(key) != nullptr, "a metadata key is not found by its name");
    (void)f.GetString(key);
    (void)f.GetUint(key);
    (void)f.GetInt(key);
    (void)f.GetFloat(key);
    (void)f.GetBool(key);
    (void)f.GetStringArray(key);
    (void)f.GetFloatArray(key);
    (void)f.GetIntArray(key);
  }
  uint8_t sum = 0;
  for (const auto& info : f.tensors()) {
    Check(f.FindTensor(info.name) != nullptr, "a tensor is not found by its name");
    const std::span<const uint8_t> bytes = f.TensorData(info);
    Check(bytes.size() == info.size, "a tensor's data span is not its size");
    // Touch the first and last byte: ASan reports a span outside the input.
    if (!bytes.empty()) sum ^= bytes.front() ^ bytes.back();
  }
  (void)sum;
  (void)swarm::model::ReadModelConfig(f);
  (void)swarm::model::Tokenizer::FromGguf(f);
  return 0;
}
