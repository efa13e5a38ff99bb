#include "shard/throughput_probe.h"

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::shard {
namespace {

using Clock = std::chrono::steady_clock;

std::string CachePath(const std::string& directory, const std::string& key) {
  std::string safe;
  for (char c : key) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '_';
  return directory + "/throughput-" + safe + ".txt";
}

}  // namespace

absl::StatusOr<Throughput> MeasureThroughput(ServingStack& stack, int decode_steps,
                                             int prompt_tokens) {
  const int64_t n_embd = stack.config().n_embd;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_embd * prompt_tokens));  // [n_embd, prompt_tokens]
  for (float& v : x) v = normal(rng);
  std::vector<float> y(x.size());
  SWARM_ASSIGN_OR_RETURN(auto cache, stack.NewCache(prompt_tokens + decode_steps + 1));
  const int64_t first = stack.first_block(), last = stack.last_block();

  // A warm-up, then the prompt, then single-token steps. The warm-up of a mixture-of-experts stack
  // is the whole prompt, which reaches (nearly) every expert, as the measured prompt then does;
  // one token would leave most experts' pages unread until the measurement.
  SequenceStep warm{cache.get(), stack.config().is_moe() ? prompt_tokens : 1};
  SWARM_RETURN_IF_ERROR(stack.Forward({&warm, 1}, first, last, x.data(), y.data()));
  SWARM_RETURN_IF_ERROR(cache->Truncate(0));
  auto start = Clock::now();
  SequenceStep prompt{cache.get(), prompt_tokens};
  SWARM_RETURN_IF_ERROR(stack.Forward({&prompt, 1}, first, last, x.data(), y.data()));
  const double prompt_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  start = Clock::now();
  for (int i = 0; i < decode_steps; ++i) {
    // Each step its own input, so that a mixture of experts reads the experts real tokens would
    // choose, not one pair over and over from cache.
    SequenceStep step{cache.get(), 1};
    const float* input = x.data() + (i % prompt_tokens) * n_embd;
    SWARM_RETURN_IF_ERROR(stack.Forward({&step, 1}, first, last, input, y.data()));
  }
  const double decode_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double blocks = static_cast<double>(stack.n_blocks());
  Throughput t;
  t.prompt_tps_per_block = prompt_tokens * blocks / std::max(prompt_seconds, 1e-9);
  t.decode_tps_per_block = decode_steps * blocks / std::max(decode_seconds, 1e-9);
  return t;
}

absl::StatusOr<Throughput> LoadCachedThroughput(const std::string& directory,
                                                const std::string& key) {
  std::ifstream in(CachePath(directory, key));
  Throughput t;
  if (!(in >> t.decode_tps_per_block >> t.prompt_tps_per_block) || !(t.decode_tps_per_block > 0) ||
      !(t.prompt_tps_per_block > 0) || t.decode_tps_per_block > 1e12 ||
      t.prompt_tps_per_block > 1e12) {
    return absl::NotFoundError("no cached throughput");
  }
  return t;
}

absl::Status StoreCachedThroughput(const std::string& directory, const std::string& key,
                                   const Throughput& throughput) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) return absl::UnavailableError(absl::StrCat("cannot create ", directory));
  std::ofstream out(CachePath(directory, key));
  out << throughput.decode_tps_per_block << " " << throughput.prompt_tps_per_block << "\n";
  if (!out) return absl::UnavailableError("cannot write the throughput cache");
  return absl::OkStatus();
}

}  // namespace swarm::shard
