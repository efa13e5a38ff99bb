// `swarm bench`: prompt-processing and generation speed of a model on this machine, as fractions of
// the machine's own limits measured in the same run: generation against the memory-bandwidth bound
// (weight bytes read per token / read bandwidth), prompt processing against the fp32 FMA peak. On
// a CUDA backend the card's own limits are measured too (device-to-device copy bandwidth, f16
// tensor-core GEMM peak) and the same runs are also given as fractions of those.
// Prints JSON on stdout (and to --json FILE), a summary on stderr.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/cache_type_flags.h"
#include "cli/commands.h"
#include "kernels/backend_factory.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/machine_probe.h"
#include "model/model_weights.h"
#include "nlohmann/json.hpp"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"

namespace swarm::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct BenchFlags {
  std::string model_path;
  kernels::BackendOptions backend;
  int64_t prompt_tokens = 512;
  int64_t gen_tokens = 64;
  int repetitions = 3;
  bool profile = false;
  bool machine_only = false;
  int64_t bandwidth_mib = 1024;
  int64_t gpu_copy_mib = 256;  // device-to-device copy probe on a GPU
  int gemm_n = 8192;           // f16 GEMM peak probe on a GPU: n x n x n
  std::string json_path;
  CacheTypeFlags cache_types;
  int64_t long_context = 4096;  // decode at this many tokens of cache, per cache type (0 = skip)
};

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

using kernels::ProcessCpuSeconds;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  return 1;
}

json MachineJson(const kernels::MachineFigures& m) {
  json peaks = json::object();
  for (const auto& [isa, flops] : m.fma_peak_per_isa) peaks[isa] = flops / 1e9;
  return {{"cpu", m.cpu},
          {"features", m.features},
          {"threads", m.threads},
          {"read_bandwidth_gb_per_s", m.read_bandwidth / 1e9},
          {"read_bandwidth_cpu_gb_per_s", m.read_bandwidth_cpu / 1e9},
          {"bandwidth_buffer_mib", static_cast<double>(m.bandwidth_buffer_bytes) / (1 << 20)},
          {"fma_peak_gflops", m.fma_peak / 1e9},
          {"fma_peak_cpu_gflops", m.fma_peak_cpu / 1e9},
          {"fma_peak_isa", m.peak_isa},
          {"fma_peak_gflops_per_isa", peaks}};
}

// The limits of a GPU backend's card, measured by this run. A figure that could not be measured
// stays 0 and its error is reported instead: nothing here is assumed or looked up.
struct DeviceFigures {
  bool present = false;  // the backend is a GPU backend
  std::string backend;
  int index = 0;
  std::string name;
  std::string compute_capability;
  int sm_count = 0;
  double memory_bytes = 0;
  double copy_bytes = 0;
  double copy_bandwidth = 0;  // bytes read + written per second, device to device
  std::string copy_error;
  int gemm_n = 0;
  double gemm_peak = 0;  // FLOP/s of an n^3 f16 x f16 -> f32 cuBLAS GEMM
  std::string gemm_error;
};

// The card's limits for a backend that can probe its device (an empty object for one that cannot).
DeviceFigures MeasureDevice(kernels::Backend& backend, const BenchFlags& flags) {
  kernels::DeviceProbe* probe = backend.device_probe();
  if (probe == nullptr) return {};
  DeviceFigures d;
  d.present = true;
  d.backend = backend.name();
  const kernels::DeviceInfo& info = probe->device_info();
  d.index = info.device;
  d.name = info.name;
  d.compute_capability = absl::StrCat(info.major, ".", info.minor);
  d.sm_count = info.sm_count;
  d.memory_bytes = static_cast<double>(info.total_memory);
  const size_t copy_bytes = static_cast<size_t>(flags.gpu_copy_mib) << 20;
  const int gemm_n = flags.gemm_n;
  std::fprintf(stderr,
               "measuring CUDA device %d (%s): device-to-device copy bandwidth and f16 "
               "tensor-core GEMM peak...\n",
               d.index, d.name.c_str());
  d.copy_bytes = static_cast<double>(copy_bytes);
  if (auto bandwidth = probe->MeasureCopyBandwidth(copy_bytes); bandwidth.ok()) {
    d.copy_bandwidth = *bandwidth;
  } else {
    d.copy_error = std::string(bandwidth.status().message());
  }
  d.gemm_n = gemm_n;
  if (auto peak = probe->MeasureF16GemmPeak(gemm_n); peak.ok()) {
    d.gemm_peak = *peak;
  } else {
    d.gemm_error = std::string(peak.status().message());
  }
  if (d.copy_bandwidth > 0) {
    std::fprintf(stderr, "device copy bandwidth %.1f GB/s (read + write)\n",
                 d.copy_bandwidth / 1e9);
  } else {
    std::fprintf(stderr, "device copy bandwidth not measured: %s\n", d.copy_error.c_str());
  }
  if (d.gemm_peak > 0) {
    std::fprintf(stderr, "f16 tensor-core GEMM peak %.1f TFLOP/s\n", d.gemm_peak / 1e12);
  } else {
    std::fprintf(stderr, "f16 tensor-core GEMM peak not measured: %s\n", d.gemm_error.c_str());
  }
  return d;
}

json DeviceJson(const DeviceFigures& d) {
  json o = {{"backend", d.backend},
            {"index", d.index},
            {"name", d.name},
            {"compute_capability", d.compute_capability},
            {"sm_count", d.sm_count},
            {"memory_gib", d.memory_bytes / (1 << 30)},
            {"copy_buffer_mib", d.copy_bytes / (1 << 20)},
            {"f16_gemm_n", d.gemm_n}};
  if (d.copy_bandwidth > 0) {
    o["copy_bandwidth_gb_per_s"] = d.copy_bandwidth / 1e9;
  } else {
    o["copy_bandwidth_error"] = d.copy_error;
  }
  if (d.gemm_peak > 0) {
    o["f16_gemm_peak_gflops"] = d.gemm_peak / 1e9;
  } else {
    o["f16_gemm_peak_error"] = d.gemm_error;
  }
  return o;
}

// What the model costs: bytes of weights read for one generated token, and multiply-adds.
struct ModelCost {
  // All blocks, norms included; of a mixture of experts, the router and the experts one token
  // reads (expert_used_count of expert_count), not every expert.
  double block_weight_bytes = 0;
  double expert_bytes = 0;  // every expert of every block (mixture of experts), read or not
  double client_bytes_per_token = 0;  // output norm + LM head + one embedding row
  double block_matmul_params = 0;     // multiply-adds per token in the blocks' matrices
  double head_params = 0;             // LM head multiply-adds
  std::map<std::string, double> bytes_by_type;
  std::string main_type;
  // Where the weights a decode step reads lie, as the backend holds them (blocks, output norm,
  // LM head): the mapped file, or the backend's own copies where PrepareWeight rewrote them.
  std::vector<std::span<const uint8_t>> weight_regions;
};

double WeightBytes(const kernels::Weight& w) {
  if (w.data == nullptr) return 0;
  auto row = kernels::RowBytes(w.type, w.n_in);
  return row.ok() ? static_cast<double>(*row) * static_cast<double>(w.n_out) : 0;
}

void AddRegion(const kernels::Weight& w, std::vector<std::span<const uint8_t>>& regions) {
  const double bytes = WeightBytes(w);
  if (bytes > 0) {
    regions.emplace_back(static_cast<const uint8_t*>(w.data), static_cast<size_t>(bytes));
  }
}

// A mixture-of-experts block: its router is read by every token, and each expert by the tokens
// that choose it, so a generated token reads n_expert_used experts (of equal size) per block.
void AddExpertCost(const model::ModelConfig& cfg, const model::BlockWeights& b, ModelCost& c) {
  if (!cfg.is_moe()) return;
  const double share = static_cast<double>(cfg.n_expert_used) /
                       static_cast<double>(std::max<int64_t>(cfg.n_expert, 1));
  c.block_weight_bytes += WeightBytes(b.ffn_gate_inp);
  c.block_matmul_params +=
      static_cast<double>(b.ffn_gate_inp.n_in) * static_cast<double>(b.ffn_gate_inp.n_out);
  c.bytes_by_type[std::string(kernels::GgmlTypeName(b.ffn_gate_inp.type))] +=
      WeightBytes(b.ffn_gate_inp);
  for (const auto* list : {&b.gate_exps, &b.up_exps, &b.down_exps}) {
    for (const kernels::Weight& w : *list) {
      c.expert_bytes += WeightBytes(w);
      c.block_weight_bytes += share * WeightBytes(w);
      c.block_matmul_params += share * static_cast<double>(w.n_in) * static_cast<double>(w.n_out);
      c.bytes_by_type[std::string(kernels::GgmlTypeName(w.type))] += share * WeightBytes(w);
    }
  }
}

absl::StatusOr<ModelCost> Cost(const shard::LocalModel& m) {
  ModelCost c;
  auto blocks = model::LoadBlockWeights(*m.file, m.config, 0, m.config.n_layer);
  if (!blocks.ok()) return blocks.status();
  for (const model::BlockWeights& b : *blocks) {
    for (const kernels::Weight* w :
         {&b.attn_norm, &b.ffn_norm, &b.bq, &b.bk, &b.bv, &b.q_norm, &b.k_norm}) {
      c.block_weight_bytes += WeightBytes(*w);
    }
    for (const kernels::Weight* w : {&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down}) {
      c.block_weight_bytes += WeightBytes(*w);
      c.block_matmul_params += static_cast<double>(w->n_in) * static_cast<double>(w->n_out);
      c.bytes_by_type[std::string(kernels::GgmlTypeName(w->type))] += WeightBytes(*w);
    }
    AddExpertCost(m.config, b, c);
  }
  auto client = model::LoadClientWeights(*m.file, m.config);
  if (!client.ok()) return client.status();
  c.client_bytes_per_token =
      WeightBytes(client->output) + WeightBytes(client->output_norm) +
      WeightBytes(client->token_embd) /
          static_cast<double>(std::max<int64_t>(client->token_embd.n_out, 1));
  c.head_params = static_cast<double>(client->output.n_in) * client->output.n_out;
  if (m.blocks != nullptr) {
    for (const model::BlockWeights& b : m.blocks->resident_weights()) {
      for (const kernels::Weight* w :
           {&b.attn_norm, &b.ffn_norm, &b.bq, &b.bk, &b.bv, &b.q_norm, &b.k_norm, &b.wq, &b.wk,
            &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down, &b.ffn_gate_inp}) {
        AddRegion(*w, c.weight_regions);
      }
      // The paired plain read of a mixture of experts reads as many experts as a token uses.
      for (size_t e = 0; e < b.gate_exps.size() && e < static_cast<size_t>(m.config.n_expert_used);
           ++e) {
        AddRegion(b.gate_exps[e], c.weight_regions);
        AddRegion(b.up_exps[e], c.weight_regions);
        AddRegion(b.down_exps[e], c.weight_regions);
      }
    }
  }
  const model::ClientWeights& resident = m.head->resident_weights();
  AddRegion(resident.output_norm, c.weight_regions);
  AddRegion(resident.output, c.weight_regions);
  double best = -1;
  for (const auto& [type, bytes] : c.bytes_by_type) {
    if (bytes > best) {
      best = bytes;
      c.main_type = type;
    }
  }
  return c;
}

// Attention multiply-adds of n tokens at positions start.. (QK and PV), all layers.
double AttentionMacs(const model::ModelConfig& cfg, int64_t start, int64_t n) {
  double visible = 0;
  for (int64_t t = 0; t < n; ++t) visible += static_cast<double>(start + t + 1);
  return 2.0 * visible * static_cast<double>(cfg.n_head * cfg.head_dim) *
         static_cast<double>(cfg.n_layer);
}

// Operation kind of a profile line: "matmul f16 5632x2048 T>1" -> "matmul f16"; others as named.
std::string OpCategory(const std::string& name) {
  if (name.rfind("matmul ", 0) != 0) return name;
  const size_t type_end = name.find(' ', 7);
  return type_end == std::string::npos ? name : name.substr(0, type_end);
}

// Per kind of operation (matmul by weight type, attention, rms_norm, rope, quantize_x8, ...):
// seconds and share of the pass's wall time; "other" is the time outside the backend's operations
// (embedding, the client head's glue, sampling, pipeline bookkeeping).
json CategoriesJson(const std::vector<kernels::OpProfile>& ops, double wall_seconds) {
  std::map<std::string, kernels::OpProfile> by_kind;
  double total = 0;
  for (const auto& op : ops) {
    kernels::OpProfile& k = by_kind[OpCategory(op.name)];
    k.name = OpCategory(op.name);
    k.calls += op.calls;
    k.seconds += op.seconds;
    k.flops += op.flops;
    k.weight_bytes += op.weight_bytes;
    total += op.seconds;
  }
  std::vector<kernels::OpProfile> sorted;
  for (auto& [name, k] : by_kind) sorted.push_back(k);
  if (wall_seconds > total) {
    sorted.push_back(kernels::OpProfile{"other", 0, wall_seconds - total, 0, 0});
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.seconds > b.seconds; });
  json list = json::array();
  const double denominator = std::max(wall_seconds, total);
  for (const auto& k : sorted) {
    json o = {{"op", k.name},
              {"calls", k.calls},
              {"seconds", k.seconds},
              {"share_of_wall", denominator > 0 ? k.seconds / denominator : 0.0}};
    if (k.flops > 0 && k.seconds > 0) o["gflops"] = k.flops / k.seconds / 1e9;
    if (k.weight_bytes > 0 && k.seconds > 0)
      o["weight_gb_per_s"] = k.weight_bytes / k.seconds / 1e9;
    list.push_back(o);
  }
  return list;
}

json ProfileJson(const std::vector<kernels::OpProfile>& ops) {
  double total = 0;
  for (const auto& op : ops) total += op.seconds;
  std::vector<kernels::OpProfile> sorted = ops;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.seconds > b.seconds; });
  json list = json::array();
  for (const auto& op : sorted) {
    json o = {{"op", op.name},
              {"calls", op.calls},
              {"seconds", op.seconds},
              {"share", total > 0 ? op.seconds / total : 0.0}};
    if (op.flops > 0 && op.seconds > 0) o["gflops"] = op.flops / op.seconds / 1e9;
    if (op.weight_bytes > 0 && op.seconds > 0) {
      o["weight_gb_per_s"] = op.weight_bytes / op.seconds / 1e9;
    }
    list.push_back(o);
  }
  return list;
}

int RunBench(const BenchFlags& flags) {
  kernels::BackendOptions backend_options = flags.backend;
  const int threads =
      backend_options.threads > 0 ? backend_options.threads : kernels::cpu::PhysicalCoreCount();
  // The probe runs on its own pool of the same size as the backend's (the backend's workers sleep
  // meanwhile).
  kernels::MachineFigures machine;
  {
    kernels::cpu::ThreadPool pool(threads);
    kernels::MachineProbeOptions probe;
    probe.bandwidth_buffer_bytes = static_cast<size_t>(flags.bandwidth_mib) << 20;
    std::fprintf(stderr, "measuring memory bandwidth and FMA peak on %d threads...\n", threads);
    auto figures = kernels::ProbeMachine(pool, probe);
    if (!figures.ok()) return Fail(figures.status());
    machine = *figures;
  }
  json out = {{"machine", MachineJson(machine)}};
  std::fprintf(stderr, "read bandwidth %.2f GB/s, fp32 FMA peak %.1f GFLOP/s (%s)\n",
               machine.read_bandwidth / 1e9, machine.fma_peak / 1e9, machine.peak_isa.c_str());
  if (flags.machine_only) {
    // With a GPU backend (--device cuda, or auto on a machine with a GPU) the card is measured too.
    auto backend = kernels::MakeBackend(backend_options);
    if (!backend.ok()) return Fail(backend.status());
    const DeviceFigures device = MeasureDevice(**backend, flags);
    if (device.present) out["device"] = DeviceJson(device);
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (flags.model_path.empty()) {
    std::fprintf(stderr, "error: -m MODEL.gguf is required (or --machine)\n");
    return 2;
  }

  backend_options.threads = threads;
  const auto load_start = Clock::now();
  auto loaded = shard::LocalModel::Load(flags.model_path, backend_options, /*load_blocks=*/true,
                                        flags.cache_types.Types());
  if (!loaded.ok()) return Fail(loaded.status());
  shard::LocalModel& m = **loaded;
  const double load_seconds = Seconds(load_start);
  auto cost = Cost(m);
  if (!cost.ok()) return Fail(cost.status());
  kernels::OpProfiler* profiler = m.backend->op_profiler();
  const DeviceFigures device = MeasureDevice(*m.backend, flags);
  const model::ModelConfig& cfg = m.config;
  const int64_t n_embd = cfg.n_embd;
  const int64_t p = flags.prompt_tokens, n = flags.gen_tokens;
  const int64_t capacity = std::max(p, n + 1) + 1;

  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(cfg.n_vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(p));
  for (int32_t& t : prompt) t = token(rng);
  const int32_t first_token = p > 0 ? prompt[0] : token(rng);  // generation starts from it
  std::vector<float> hidden(static_cast<size_t>(n_embd * std::max<int64_t>(p, 1)));
  std::vector<float> logits(static_cast<size_t>(cfg.n_vocab));

  // One prompt pass: embed, every block, logits of the last token.
  auto run_prompt = [&](shard::LocalPipeline& pipe) -> absl::Status {
    if (auto s = m.head->Embed(prompt, hidden.data()); !s.ok()) return s;
    if (auto s = pipe.Forward(p, hidden.data(), hidden.data()); !s.ok()) return s;
    return m.head->Logits(hidden.data() + (p - 1) * n_embd, logits.data());
  };
  // n decode steps after one token of context, feeding back the argmax.
  auto run_generation = [&](shard::LocalPipeline& pipe, int64_t steps) -> absl::Status {
    int32_t next = first_token;
    for (int64_t i = 0; i <= steps; ++i) {
      const int32_t ids[1] = {next};
      if (auto s = m.head->Embed(ids, hidden.data()); !s.ok()) return s;
      if (auto s = pipe.Forward(1, hidden.data(), hidden.data()); !s.ok()) return s;
      if (auto s = m.head->Logits(hidden.data(), logits.data()); !s.ok()) return s;
      next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      if (next < 0 || next >= cfg.n_vocab) next = first_token;
    }
    return absl::OkStatus();
  };
  auto new_pipeline = [&]() { return shard::LocalPipeline::Create(*m.blocks, capacity); };

  // Warm-up: fault in every weight page and size the scratch buffers.
  {
    auto pipe = new_pipeline();
    if (!pipe.ok()) return Fail(pipe.status());
    if (auto s = run_generation(**pipe, 2); !s.ok()) return Fail(s);
    auto pipe2 = new_pipeline();
    if (!pipe2.ok()) return Fail(pipe2.status());
    if (p > 0) {
      if (auto s = run_prompt(**pipe2); !s.ok()) return Fail(s);
    }
  }
  std::fprintf(stderr, "%s: %s, %.2f GB of weights per token, backend %s, %d threads\n",
               flags.model_path.c_str(), cost->main_type.c_str(),
               (cost->block_weight_bytes + cost->client_bytes_per_token) / 1e9,
               m.backend->name().c_str(), threads);

  std::vector<double> prompt_seconds, gen_seconds, prompt_cpu, gen_cpu;
  // Generation is timed in chunks of tokens, each followed by a plain read of the weights where
  // the backend holds them (host-memory backends): on a machine whose memory rate drifts (this kind
  // of VM swings between ~40 and ~70 GB/s within seconds), a chunk and the read beside it see the
  // same memory, so their ratio measures the kernels rather than the drift.
  const bool pair_reads = n > 0 && m.backend->host_memory() && !cost->weight_regions.empty();
  const double bytes_per_token = cost->block_weight_bytes + cost->client_bytes_per_token;
  constexpr int64_t kPairChunkTokens = 8;
  std::vector<double> paired_fractions, paired_read_rates;
  kernels::cpu::ThreadPool read_pool(threads);
  for (int rep = 0; rep < flags.repetitions; ++rep) {
    if (p > 0) {
      auto pipe = new_pipeline();
      if (!pipe.ok()) return Fail(pipe.status());
      const auto start = Clock::now();
      const double cpu_start = ProcessCpuSeconds();
      if (auto s = run_prompt(**pipe); !s.ok()) return Fail(s);
      prompt_seconds.push_back(Seconds(start));
      prompt_cpu.push_back(ProcessCpuSeconds() - cpu_start);
    }
    if (n > 0) {
      auto pipe = new_pipeline();
      if (!pipe.ok()) return Fail(pipe.status());
      // The first token (context 0) is not timed: steps 1..n are.
      if (auto s = run_generation(**pipe, 0); !s.ok()) return Fail(s);
      double seconds = 0, cpu_seconds = 0;
      for (int64_t done = 0; done < n;) {
        const int64_t chunk = pair_reads ? std::min(kPairChunkTokens, n - done) : n;
        const auto start = Clock::now();
        const double cpu_start = ProcessCpuSeconds();
        if (auto s = run_generation(**pipe, chunk - 1); !s.ok()) return Fail(s);
        const double chunk_seconds = Seconds(start);
        seconds += chunk_seconds;
        cpu_seconds += ProcessCpuSeconds() - cpu_start;
        done += chunk;
        if (pair_reads) {
          const kernels::Rate read = kernels::MeasureReadOf(read_pool, cost->weight_regions, 1);
          paired_read_rates.push_back(read.wall);
          paired_fractions.push_back(static_cast<double>(chunk) / chunk_seconds /
                                     (read.wall / bytes_per_token));
        }
      }
      gen_seconds.push_back(seconds);
      gen_cpu.push_back(cpu_seconds);
    }
  }

  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
  };
  auto best = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
  };
  out["model"] = {{"path", flags.model_path},       {"name", cfg.name},
                  {"weight_type", cost->main_type}, {"n_layer", cfg.n_layer},
                  {"n_embd", cfg.n_embd},           {"n_ff", cfg.n_ff},
                  {"n_vocab", cfg.n_vocab},         {"weight_bytes_per_token", bytes_per_token},
                  {"load_seconds", load_seconds}};
  if (cfg.is_moe()) {
    // weight_bytes_per_token counts the experts a token reads; this is all of them.
    out["model"]["n_expert"] = cfg.n_expert;
    out["model"]["n_expert_used"] = cfg.n_expert_used;
    out["model"]["n_ff_exp"] = cfg.n_ff_exp;
    out["model"]["expert_bytes"] = cost->expert_bytes;
  }
  out["backend"] = {{"name", m.backend->name()}, {"threads", threads}};
  if (device.present) out["device"] = DeviceJson(device);
  // Figures per second of wall time, and per second of process CPU time / threads ("_cpu": what
  // the same run gets on cores nobody else uses; see kernels::Rate).
  if (p > 0) {
    const double macs = static_cast<double>(p) * cost->block_matmul_params + cost->head_params +
                        AttentionMacs(cfg, 0, p);
    const double wall = mean(prompt_seconds), cpu_norm = mean(prompt_cpu) / threads;
    const double gflops = 2 * macs / wall / 1e9, gflops_cpu = 2 * macs / cpu_norm / 1e9;
    out["prompt"] = {
        {"tokens", p},
        {"repetitions", flags.repetitions},
        {"seconds_mean", wall},
        {"tokens_per_second", static_cast<double>(p) / wall},
        {"tokens_per_second_best", static_cast<double>(p) / best(prompt_seconds)},
        {"gflops", gflops},
        {"fraction_of_fma_peak", machine.fma_peak > 0 ? gflops * 1e9 / machine.fma_peak : 0.0},
        // Below 1 when other processes took the cores (or threads waited): the wall-time figures
        // are then pessimistic, and the _cpu ones tell what the code does.
        {"cpu_utilization", cpu_norm / wall},
        {"tokens_per_second_cpu", static_cast<double>(p) / cpu_norm},
        {"gflops_cpu", gflops_cpu},
        {"fraction_of_fma_peak_cpu",
         machine.fma_peak_cpu > 0 ? gflops_cpu * 1e9 / machine.fma_peak_cpu : 0.0}};
    std::fprintf(stderr,
                 "prompt %lld tokens: %.2f tokens/s, %.1f GFLOP/s = %.1f%% of FMA peak "
                 "(cpu-time: %.2f tokens/s, %.1f%%; utilization %.2f)\n",
                 static_cast<long long>(p), static_cast<double>(p) / wall, gflops,
                 100 * out["prompt"]["fraction_of_fma_peak"].get<double>(),
                 static_cast<double>(p) / cpu_norm,
                 100 * out["prompt"]["fraction_of_fma_peak_cpu"].get<double>(), cpu_norm / wall);
    if (device.gemm_peak > 0) {
      const double fraction = gflops * 1e9 / device.gemm_peak;
      out["prompt"]["fraction_of_tensor_core_peak"] = fraction;
      std::fprintf(stderr, "prompt: %.1f%% of the device's f16 tensor-core GEMM peak\n",
                   100 * fraction);
    }
  }
  if (n > 0) {
    const double wall = mean(gen_seconds), cpu_norm = mean(gen_cpu) / threads;
    const double tps = static_cast<double>(n) / wall, tps_cpu = static_cast<double>(n) / cpu_norm;
    const double bound = machine.read_bandwidth / bytes_per_token;
    const double bound_cpu = machine.read_bandwidth_cpu / bytes_per_token;
    out["generation"] = {{"tokens", n},
                         {"repetitions", flags.repetitions},
                         {"seconds_mean", wall},
                         {"tokens_per_second", tps},
                         {"tokens_per_second_best", static_cast<double>(n) / best(gen_seconds)},
                         {"bandwidth_bound_tokens_per_second", bound},
                         {"fraction_of_bandwidth_bound", tps / bound},
                         {"effective_gb_per_s", tps * bytes_per_token / 1e9},
                         {"cpu_utilization", cpu_norm / wall},
                         {"tokens_per_second_cpu", tps_cpu},
                         {"bandwidth_bound_cpu_tokens_per_second", bound_cpu},
                         {"fraction_of_bandwidth_bound_cpu", tps_cpu / bound_cpu}};
    std::fprintf(stderr,
                 "generation %lld tokens: %.2f tokens/s, bound %.2f tokens/s = %.1f%% of the "
                 "bandwidth bound (cpu-time: %.2f tokens/s, %.1f%%; utilization %.2f)\n",
                 static_cast<long long>(n), tps, bound, 100 * tps / bound, tps_cpu,
                 100 * tps_cpu / bound_cpu, cpu_norm / wall);
    if (device.copy_bandwidth > 0) {
      // On the card a step reads the weights (blocks and client head all live there) and the KV
      // cache up to its position: K and V rows of every layer, of the cache's types; the timed
      // steps sit at positions 1..n, so (n + 3) / 2 rows on average.
      const double kv_bytes =
          static_cast<double>(m.blocks->CacheBytesPerToken()) * (static_cast<double>(n) + 3) / 2;
      const double device_bytes = bytes_per_token + kv_bytes;
      const double device_bound = device.copy_bandwidth / device_bytes;
      out["generation"]["kv_cache_bytes_per_token_mean"] = kv_bytes;
      out["generation"]["device_bytes_per_token"] = device_bytes;
      out["generation"]["device_bandwidth_bound_tokens_per_second"] = device_bound;
      out["generation"]["fraction_of_device_bandwidth_bound"] = tps / device_bound;
      std::fprintf(stderr,
                   "generation against the device copy bandwidth: bound %.2f tokens/s, %.1f%% "
                   "of it\n",
                   device_bound, 100 * tps / device_bound);
    }
  }
  if (pair_reads) {
    // The probe's buffer and the weights may sit in memory that reads at different speeds, and
    // the machine's memory rate drifts: each chunk of generated tokens was followed by a plain
    // read of the weights themselves where the backend holds them (split over the threads as the
    // products split their rows). The median of the chunks' fractions of their read's bound is
    // the kernels' distance from a plain read. Only for backends that read the weights from host
    // memory (a GPU reads its own copy).
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      const size_t h = v.size() / 2;
      return v.size() % 2 == 1 ? v[h] : (v[h - 1] + v[h]) / 2;
    };
    const double read_rate = median(paired_read_rates);
    const double fraction = median(paired_fractions);
    out["generation"]["weights_read_gb_per_s"] = read_rate / 1e9;
    out["generation"]["weights_read_bound_tokens_per_second"] = read_rate / bytes_per_token;
    out["generation"]["fraction_of_weights_read_bound"] = fraction;
    out["generation"]["weights_read_pairs"] = paired_fractions.size();
    out["generation"]["fraction_of_weights_read_bound_min"] =
        *std::min_element(paired_fractions.begin(), paired_fractions.end());
    out["generation"]["fraction_of_weights_read_bound_max"] =
        *std::max_element(paired_fractions.begin(), paired_fractions.end());
    std::fprintf(
        stderr,
        "a plain read of the weights where the backend holds them, after each %lld tokens: "
        "median %.2f GB/s; generation reaches %.1f%% of it (median of %zu chunks, "
        "%.1f-%.1f%%)\n",
        static_cast<long long>(kPairChunkTokens), read_rate / 1e9, 100 * fraction,
        paired_fractions.size(),
        100 * out["generation"]["fraction_of_weights_read_bound_min"].get<double>(),
        100 * out["generation"]["fraction_of_weights_read_bound_max"].get<double>());
  }

  if (flags.long_context > 0) {
    // Decode at a long context, once per cache type on the same weights: each step's attention
    // reads the whole cache, which is where the cache's element type shows. The cache is filled
    // by a prompt of random tokens (in pieces, so the scratch stays small), then kLongSteps steps
    // are timed. The context is capped at the model's training context.
    constexpr int64_t kLongSteps = 16;
    constexpr int64_t kFillPiece = 512;
    const int64_t context =
        cfg.n_ctx_train > 0 ? std::min(flags.long_context, cfg.n_ctx_train) : flags.long_context;
    std::vector<float> fill_hidden(static_cast<size_t>(n_embd * kFillPiece));
    json rows = json::array();
    for (const kernels::KvTypes types :
         {kernels::KvTypes{kernels::GgmlType::kF32, kernels::GgmlType::kF32},
          kernels::KvTypes{kernels::GgmlType::kF16, kernels::GgmlType::kF16},
          kernels::KvTypes{kernels::GgmlType::kQ8_0, kernels::GgmlType::kQ8_0}}) {
      if (auto valid = kernels::ValidateKvTypes(types, cfg.head_dim); !valid.ok()) {
        std::fprintf(stderr, "decode at %lld tokens of context, cache %s: skipped (%s)\n",
                     static_cast<long long>(context), kernels::KvTypesText(types).c_str(),
                     std::string(valid.message()).c_str());
        continue;
      }
      auto pipe = shard::LocalPipeline::Create(*m.blocks, context + kLongSteps + 2, types);
      if (!pipe.ok()) return Fail(pipe.status());
      const auto fill_start = Clock::now();
      for (int64_t done = 0; done < context;) {
        const int64_t piece = std::min(kFillPiece, context - done);
        std::vector<int32_t> ids(static_cast<size_t>(piece));
        for (int32_t& id : ids) id = token(rng);
        if (auto s = m.head->Embed(ids, fill_hidden.data()); !s.ok()) return Fail(s);
        if (auto s = (*pipe)->Forward(piece, fill_hidden.data(), fill_hidden.data()); !s.ok()) {
          return Fail(s);
        }
        done += piece;
      }
      const double fill_seconds = Seconds(fill_start);
      const auto start = Clock::now();
      if (auto s = run_generation(**pipe, kLongSteps - 1); !s.ok()) return Fail(s);
      const double seconds = Seconds(start);
      const double tps = static_cast<double>(kLongSteps) / seconds;
      const size_t bytes_per_position =
          shard::KvCache::BytesPerToken(cfg.n_layer, cfg.kv_dim(), types);
      rows.push_back({{"cache_type", kernels::KvTypesText(types)},
                      {"context_tokens", context},
                      {"decode_tokens", kLongSteps},
                      {"decode_tokens_per_second", tps},
                      {"prefill_tokens_per_second", static_cast<double>(context) / fill_seconds},
                      {"kv_cache_bytes_per_token", bytes_per_position},
                      {"kv_cache_bytes_at_context", bytes_per_position * context}});
      std::fprintf(stderr,
                   "decode at %lld tokens of context, cache %s: %.2f tokens/s (%.1f MiB of KV "
                   "cache)\n",
                   static_cast<long long>(context), kernels::KvTypesText(types).c_str(), tps,
                   static_cast<double>(bytes_per_position * context) / (1 << 20));
    }
    out["long_context"] = rows;
  }

  if (flags.profile && profiler != nullptr) {
    json profile;
    profiler->SetProfiling(true);
    if (p > 0) {
      auto pipe = new_pipeline();
      if (!pipe.ok()) return Fail(pipe.status());
      profiler->ResetProfile();
      const auto start = Clock::now();
      if (auto s = run_prompt(**pipe); !s.ok()) return Fail(s);
      const double wall = Seconds(start);
      profile["prompt"] = ProfileJson(profiler->profile());
      profile["prompt_by_kind"] = CategoriesJson(profiler->profile(), wall);
      profile["prompt_wall_seconds"] = wall;
    }
    if (n > 0) {
      auto pipe = new_pipeline();
      if (!pipe.ok()) return Fail(pipe.status());
      if (auto s = run_generation(**pipe, 0); !s.ok()) return Fail(s);
      profiler->ResetProfile();
      const auto start = Clock::now();
      if (auto s = run_generation(**pipe, std::min<int64_t>(n, 16) - 1); !s.ok()) return Fail(s);
      const double wall = Seconds(start);
      profile["generation"] = ProfileJson(profiler->profile());
      profile["generation_by_kind"] = CategoriesJson(profiler->profile(), wall);
      profile["generation_wall_seconds"] = wall;
    }
    profiler->SetProfiling(false);
    out["profile"] = profile;
  }

  const std::string text = out.dump(2);
  std::printf("%s\n", text.c_str());
  if (!flags.json_path.empty()) {
    std::ofstream file(flags.json_path);
    file << text << "\n";
    if (!file) {
      std::fprintf(stderr, "error: cannot write %s\n", flags.json_path.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Measure prompt and generation speed against this machine's bandwidth and FMA peak");
  cmd->footer(
      "Reports generation tokens/s as a fraction of the memory-bandwidth bound (weight bytes per\n"
      "token / read bandwidth) and prompt tokens/s as a fraction of the fp32 FMA peak, both\n"
      "limits measured by this run. With a GPU backend (--device cuda[:N]) also against the\n"
      "card's device-to-device copy bandwidth and f16 tensor-core GEMM peak, measured too.\n"
      "JSON on stdout.\n"
      "Examples:\n"
      "  swarm bench -m tinyllama-q4k.gguf -t 2\n"
      "  swarm bench -m tinyllama-f16.gguf -t 2 -p 512 -n 64 --profile --json f16.json\n"
      "  swarm bench --machine -t 2\n"
      "  swarm bench -m tinyllama-f16.gguf --device cuda:0");
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file");
  cmd->add_option("-t,--threads", flags->backend.threads, "CPU threads (0 = physical cores)");
  cmd->add_option("--backend,--device", flags->backend.name,
                  "Backend, alias --device: auto (GPU 0 if usable, else cpu), cpu, cpu:generic, "
                  "cpu:avx2, cpu:avx512, reference, cuda (= cuda:0), cuda:N")
      ->capture_default_str();
  cmd->add_option("-p,--prompt-tokens", flags->prompt_tokens, "Prompt length (0 = skip)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 16));
  cmd->add_option("-n,--gen-tokens", flags->gen_tokens, "Generated tokens (0 = skip)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 16));
  cmd->add_option("-r,--repetitions", flags->repetitions, "Timed repetitions (mean reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  cmd->add_flag("--profile", flags->profile, "Add a per-operation time breakdown");
  cmd->add_flag("--machine", flags->machine_only, "Only measure bandwidth and FMA peak");
  cmd->add_option("--bandwidth-mib", flags->bandwidth_mib, "Buffer for the bandwidth probe")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 20));
  cmd->add_option("--gpu-copy-mib", flags->gpu_copy_mib,
                  "GPU only: buffer of the device-to-device copy bandwidth probe")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  cmd->add_option("--gemm-n", flags->gemm_n,
                  "GPU only: size n of the n x n x n f16 GEMM of the tensor-core peak probe")
      ->capture_default_str()
      ->check(CLI::Range(64, 32768));
  cmd->add_option("--json", flags->json_path, "Also write the JSON to this file");
  AddCacheTypeFlags(*cmd, flags->cache_types);
  cmd->add_option("--long-context", flags->long_context,
                  "Also time decode steps at this many tokens of KV cache, once per cache type "
                  "(f32, f16, q8_0; capped at the model's training context; 0 = skip)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->callback([flags, &exit_code] { exit_code.value = RunBench(*flags); });
}

}  // namespace swarm::cli
