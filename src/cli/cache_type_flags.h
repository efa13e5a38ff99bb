// The KV cache type flags shared by the subcommands that hold KV caches (llama.cpp's names
// --cache-type-k / --cache-type-v and its default, f16). A bad value is a usage error naming the
// flag, refused before anything runs.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "kernels/kv_types.h"

namespace swarm::cli {

struct CacheTypeFlags {
  std::string k = "f16";
  std::string v = "f16";

  // The parsed types (the flags' validators accepted both already).
  kernels::KvTypes Types() const {
    return {kernels::ParseKvType(k).value_or(kernels::kDefaultKvTypes.k),
            kernels::ParseKvType(v).value_or(kernels::kDefaultKvTypes.v)};
  }
};

inline void AddCacheTypeFlags(CLI::App& cmd, CacheTypeFlags& f) {
  const CLI::Validator kv_type(
      [](std::string& value) -> std::string {
        auto type = kernels::ParseKvType(value);
        return type.ok() ? std::string() : std::string(type.status().message());
      },
      "f32|f16|q8_0", "KV cache type");
  cmd.add_option("--cache-type-k", f.k,
                 "Element type of the KV cache's keys: f32, f16 or q8_0 (q8_0 needs a head "
                 "dimension that is a multiple of 32)")
      ->capture_default_str()
      ->check(kv_type);
  cmd.add_option("--cache-type-v", f.v, "Element type of the KV cache's values: f32, f16 or q8_0")
      ->capture_default_str()
      ->check(kv_type);
}

}  // namespace swarm::cli
