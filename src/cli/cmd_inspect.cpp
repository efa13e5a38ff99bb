// `swarm inspect FILE.gguf`: the header, metadata (long arrays summarized), tensor table and the
// derived model configuration of a GGUF file.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/absl_compat.h"
#include "cli/commands.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/slice.h"

namespace swarm::cli {
namespace {

using model::GgufValue;
using model::GgufValueType;

struct InspectFlags {
  std::string path;
  int array_items = 8;
};

// A string quoted, with control and non-ASCII bytes escaped, cut at `max` bytes.
std::string Quoted(std::string_view s, size_t max = 80) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  out += '"';
  if (s.size() > max) absl::StrAppend(&out, "... (", s.size(), " bytes)");
  return out;
}

std::string Format(const GgufValue& v, int array_items) {
  if (const auto* u = std::get_if<uint64_t>(&v.value)) return absl::StrCat(*u);
  if (const auto* i = std::get_if<int64_t>(&v.value)) return absl::StrCat(*i);
  if (const auto* d = std::get_if<double>(&v.value)) return absl::StrFormat("%.9g", *d);
  if (const auto* b = std::get_if<bool>(&v.value)) return *b ? "true" : "false";
  if (const auto* s = std::get_if<std::string_view>(&v.value)) return Quoted(*s);
  const auto& array = std::get<GgufValue::Array>(v.value);
  std::string out = "[";
  const size_t n = array.elements.size();
  for (size_t i = 0; i < n && i < static_cast<size_t>(array_items); ++i) {
    absl::StrAppend(&out, i ? ", " : "", Format(array.elements[i], array_items));
  }
  if (n > static_cast<size_t>(array_items))
    absl::StrAppend(&out, ", ... (", n - array_items, " more)");
  return out + "]";
}

std::string TypeName(const GgufValue& v) {
  if (const auto* a = std::get_if<GgufValue::Array>(&v.value)) {
    return absl::StrCat(ToAbsl(model::GgufValueTypeName(a->element_type)), "[", a->elements.size(),
                        "]");
  }
  return std::string(model::GgufValueTypeName(v.type));
}

std::string Shape(const model::GgufTensorInfo& t) {
  std::string s = "[";
  for (uint32_t d = 0; d < t.n_dims; ++d) absl::StrAppend(&s, d ? ", " : "", t.ne[d]);
  return s + "]";
}

int RunInspect(const InspectFlags& flags) {
  auto opened = model::GgufFile::Open(flags.path);
  if (!opened.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(opened.status().message()).c_str());
    return 1;
  }
  const model::GgufFile& f = **opened;
  std::printf("%s\n", f.path().c_str());
  std::printf("GGUF version %u, alignment %llu, data section at %llu, file size %llu bytes\n",
              f.version(), static_cast<unsigned long long>(f.alignment()),
              static_cast<unsigned long long>(f.data_offset()),
              static_cast<unsigned long long>(f.file_size()));

  std::printf("\nmetadata (%zu keys):\n", f.metadata().size());
  size_t key_width = 0;
  for (const auto& [key, value] : f.metadata()) key_width = std::max(key_width, key.size());
  for (const auto& [key, value] : f.metadata()) {
    std::printf("  %-*s  %-14s %s\n", static_cast<int>(key_width), key.c_str(),
                TypeName(value).c_str(), Format(value, flags.array_items).c_str());
  }

  uint64_t total = 0;
  size_t name_width = 4;
  for (const auto& t : f.tensors()) {
    total += t.size;
    name_width = std::max(name_width, t.name.size());
  }
  std::printf("\ntensors (%zu, %llu bytes):\n", f.tensors().size(),
              static_cast<unsigned long long>(total));
  if (!f.tensors().empty()) {
    std::printf("  %5s  %-*s  %-5s  %-22s %14s %14s\n", "#", static_cast<int>(name_width), "name",
                "type", "shape", "offset", "bytes");
  }
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& t = f.tensors()[i];
    std::printf("  %5zu  %-*s  %-5s  %-22s %14llu %14llu\n", i, static_cast<int>(name_width),
                t.name.c_str(), std::string(kernels::GgmlTypeName(t.type)).c_str(),
                Shape(t).c_str(), static_cast<unsigned long long>(t.offset),
                static_cast<unsigned long long>(t.size));
  }

  std::printf("\nmodel config:\n");
  auto config = model::ReadModelConfig(f);
  if (!config.ok()) {
    // A valid GGUF that is no supported model (e.g. a vocabulary-only file) is not an error.
    std::printf("  unavailable: %s\n", std::string(config.status().message()).c_str());
    return 0;
  }
  const model::ModelConfig& c = *config;
  const std::string name = c.name.empty() ? "" : absl::StrCat(" (", c.name, ")");
  std::printf("  architecture   %s%s\n", c.architecture.c_str(), name.c_str());
  std::printf("  model_id       %s\n", c.model_id.c_str());
  std::printf("  blocks         %lld\n", static_cast<long long>(c.n_layer));
  std::printf("  n_embd         %lld\n", static_cast<long long>(c.n_embd));
  std::printf("  n_ff           %lld\n", static_cast<long long>(c.n_ff));
  if (c.is_moe()) {
    std::printf("  experts        %lld, %lld used per token, n_ff %lld each\n",
                static_cast<long long>(c.n_expert), static_cast<long long>(c.n_expert_used),
                static_cast<long long>(c.n_ff_exp));
  }
  std::printf("  heads          %lld (KV %lld, head dim %lld)\n", static_cast<long long>(c.n_head),
              static_cast<long long>(c.n_head_kv), static_cast<long long>(c.head_dim));
  std::printf("  n_vocab        %lld\n", static_cast<long long>(c.n_vocab));
  std::printf("  n_ctx_train    %lld\n", static_cast<long long>(c.n_ctx_train));
  std::printf("  rms_eps        %g\n", c.rms_eps);
  std::printf(
      "  rope           freq_base %g, %s%s, scale %g%s\n", c.rope.freq_base,
      c.rope.style == kernels::RopeStyle::kNeox ? "NeoX (half-split pairs)" : "adjacent pairs",
      c.rope.freq_factors.empty() ? "" : ", rope_freqs factors", 1.0 / c.rope.freq_scale,
      c.rope.ext_factor != 0.0f ? " (YaRN)" : "");
  std::printf("  qkv_bias       %s\n", c.qkv_bias ? "yes" : "no");
  std::printf("  qk_norm        %s\n", c.qk_norm ? "yes" : "no");
  auto range = model::ReadSliceRange(f);
  if (!range.ok()) {
    std::printf("  slice          invalid: %s\n", std::string(range.status().message()).c_str());
  } else if (range->has_value()) {
    std::printf("  slice          blocks [%lld, %lld) of %lld%s\n",
                static_cast<long long>((*range)->first), static_cast<long long>((*range)->last),
                static_cast<long long>(c.n_layer),
                f.FindTensor("token_embd.weight") ? ", with client tensors" : "");
  }
  return 0;
}

}  // namespace

void AddInspectCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Print a GGUF file's header, metadata, tensor table and model configuration");
  cmd->footer(
      "Examples:\n"
      "  swarm inspect stories260K.gguf\n"
      "  swarm inspect part.gguf --array-items 3   # a slice: also shows its block range");
  cmd->add_option("file", flags->path, "GGUF file")->required();
  cmd->add_option("--array-items", flags->array_items, "Array elements shown per metadata key")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->callback([flags, &exit_code] { exit_code.value = RunInspect(*flags); });
}

}  // namespace swarm::cli
