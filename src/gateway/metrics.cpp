#include "gateway/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace swarm::gateway {
namespace {

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// Label values may hold anything (peer ids come from the network): escape as the format requires.
void AppendEscaped(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!first) out += ',';
    first = false;
    out += names[i];
    out += "=\"";
    AppendEscaped(out, values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

}  // namespace

MetricsRegistry::MetricsRegistry() {
  Define("swarm_http_requests_total", Type::kCounter, "HTTP requests by endpoint and status code.",
         {"endpoint", "status"});
  Define("swarm_prompt_tokens_total", Type::kCounter, "Prompt tokens processed.", {});
  Define("swarm_generated_tokens_total", Type::kCounter, "Tokens generated.", {});
  Define("swarm_token_latency_seconds", Type::kHistogram,
         "Time between consecutive generated tokens.", {}, LatencyBuckets());
  Define("swarm_time_to_first_token_seconds", Type::kHistogram,
         "Time from the start of a generation to its first token.", {}, LatencyBuckets());
  Define("swarm_peer_step_latency_seconds", Type::kHistogram,
         "Forward step latency per peer as the client saw it.", {"peer"}, LatencyBuckets());
  Define("swarm_failovers_total", Type::kCounter, "Failed peers routed around mid-generation.", {});
  Define("swarm_bytes_sent_total", Type::kCounter, "Activation bytes sent, per codec.", {"codec"});
  Define("swarm_kv_cache_used_tokens", Type::kGauge, "KV-cache tokens in use, per peer.", {"peer"});
  Define("swarm_kv_cache_capacity_tokens", Type::kGauge, "KV-cache token budget, per peer.",
         {"peer"});
  Define("swarm_active_generations", Type::kGauge, "Generations running now.", {});
  Define("swarm_peers", Type::kGauge, "Peers known to the client, by state.", {"state"});
  Define("swarm_kv_cache_used_bytes", Type::kGauge, "KV-cache bytes in use, per peer.", {"peer"});
  Define("swarm_kv_cache_capacity_bytes", Type::kGauge, "KV-cache byte budget, per peer.",
         {"peer"});
  Define("swarm_peer_cache_tokens_left", Type::kGauge, "Free KV-cache tokens announced per peer.",
         {"peer"});
  Define("swarm_peer_cache_bytes_left", Type::kGauge, "Free KV-cache bytes announced per peer.",
         {"peer"});
  Define("swarm_peer_cache_bytes_total", Type::kGauge, "KV-cache bytes announced per peer.",
         {"peer"});
  Define("swarm_block_peers", Type::kGauge, "Online peers serving each block.", {"block"});
  Define("swarm_verified_steps_total", Type::kCounter,
         "Steps of a span checked against a replica peer and found equal.", {"span"});
  Define("swarm_unverified_steps_total", Type::kCounter,
         "Steps of a span not checked (not drawn, or no replica serves the span).", {"span"});
  Define("swarm_verification_mismatches_total", Type::kCounter,
         "Steps where a peer's output disagreed with a replica's.", {"span"});
  Define("swarm_outputs_refused_total", Type::kCounter,
         "Peer outputs refused by the output checks (NaN, infinity, norm out of bounds).", {});
  Define("swarm_peers_banned_total", Type::kCounter, "Peers banned as liars.", {});
  Define("swarm_speculative_drafted_tokens_total", Type::kCounter,
         "Drafted tokens the target verified (speculative decoding).", {});
  Define("swarm_speculative_accepted_tokens_total", Type::kCounter,
         "Drafted tokens the target accepted (speculative decoding).", {});
  Define("swarm_speculative_traversals_total", Type::kCounter,
         "Verification chunks sent through the blocks (speculative decoding).", {});
  Define("swarm_speculative_tokens_total", Type::kCounter,
         "Tokens the verification chunks gave (speculative decoding).", {});
  Define("swarm_speculative_chunks_in_flight", Type::kGauge,
         "Verification chunks in flight now, over every generation (speculative decoding).", {});
}

void MetricsRegistry::Define(std::string name, Type type, std::string help,
                             std::vector<std::string> label_names, std::vector<double> bounds) {
  Family f;
  f.help = std::move(help);
  f.type = type;
  f.label_names = std::move(label_names);
  f.bounds = std::move(bounds);
  absl::MutexLock lock(&mu_);
  families_[std::move(name)] = std::move(f);
}

MetricsRegistry::Series* MetricsRegistry::FindOrCreate(std::string_view family,
                                                       const std::vector<std::string>& labels,
                                                       Type type) {
  auto it = families_.find(family);
  if (it == families_.end() || it->second.type != type ||
      it->second.label_names.size() != labels.size()) {
    return nullptr;
  }
  Family& f = it->second;
  auto s = f.series.find(labels);
  if (s != f.series.end()) return &s->second;
  if (f.series.size() >= kMaxSeriesPerFamily) return nullptr;
  Series& created = f.series[labels];
  if (type == Type::kHistogram) created.buckets.assign(f.bounds.size() + 1, 0);
  return &created;
}

void MetricsRegistry::Add(std::string_view family, const std::vector<std::string>& labels,
                          double value) {
  absl::MutexLock lock(&mu_);
  if (Series* s = FindOrCreate(family, labels, Type::kCounter)) s->value += value;
}

void MetricsRegistry::Set(std::string_view family, const std::vector<std::string>& labels,
                          double value) {
  absl::MutexLock lock(&mu_);
  if (Series* s = FindOrCreate(family, labels, Type::kGauge)) s->value = value;
}

void MetricsRegistry::Observe(std::string_view family, const std::vector<std::string>& labels,
                              double value) {
  if (!std::isfinite(value)) return;
  absl::MutexLock lock(&mu_);
  Series* s = FindOrCreate(family, labels, Type::kHistogram);
  if (s == nullptr) return;
  const std::vector<double>& bounds = families_.find(family)->second.bounds;
  size_t bucket = std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  s->buckets[bucket] += 1;
  s->sum += value;
  s->count += 1;
}

void MetricsRegistry::ReplaceGauge(
    std::string_view family,
    const std::vector<std::pair<std::vector<std::string>, double>>& series) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(family);
  if (it == families_.end() || it->second.type != Type::kGauge) return;
  it->second.series.clear();
  for (const auto& [labels, value] : series) {
    if (Series* s = FindOrCreate(family, labels, Type::kGauge)) s->value = value;
  }
}

void MetricsRegistry::CountRequest(std::string_view endpoint, int status) {
  Add("swarm_http_requests_total", {std::string(endpoint), std::to_string(status)});
}

void MetricsRegistry::AddTokens(int64_t prompt_tokens, int64_t completion_tokens) {
  Add("swarm_prompt_tokens_total", {}, static_cast<double>(prompt_tokens));
  Add("swarm_generated_tokens_total", {}, static_cast<double>(completion_tokens));
}

void MetricsRegistry::ObserveTokenLatency(double seconds) {
  Observe("swarm_token_latency_seconds", {}, seconds);
}

void MetricsRegistry::ObserveTimeToFirstToken(double seconds) {
  Observe("swarm_time_to_first_token_seconds", {}, seconds);
}

void MetricsRegistry::ObservePeerStep(std::string_view peer_id, double seconds) {
  Observe("swarm_peer_step_latency_seconds", {std::string(peer_id)}, seconds);
}

void MetricsRegistry::AddFailover() { Add("swarm_failovers_total", {}); }

void MetricsRegistry::AddVerification(std::string_view span, int64_t verified, int64_t unverified,
                                      int64_t mismatches) {
  const std::vector<std::string> labels = {std::string(span)};
  Add("swarm_verified_steps_total", labels, static_cast<double>(verified));
  Add("swarm_unverified_steps_total", labels, static_cast<double>(unverified));
  Add("swarm_verification_mismatches_total", labels, static_cast<double>(mismatches));
}

void MetricsRegistry::AddSpeculation(int64_t drafted, int64_t accepted, int64_t traversals,
                                     int64_t tokens) {
  Add("swarm_speculative_tokens_total", {}, static_cast<double>(tokens));
  Add("swarm_speculative_drafted_tokens_total", {}, static_cast<double>(drafted));
  Add("swarm_speculative_accepted_tokens_total", {}, static_cast<double>(accepted));
  Add("swarm_speculative_traversals_total", {}, static_cast<double>(traversals));
}

void MetricsRegistry::AddChunksInFlight(int64_t delta) {
  absl::MutexLock lock(&mu_);
  if (Series* s = FindOrCreate("swarm_speculative_chunks_in_flight", {}, Type::kGauge)) {
    s->value += static_cast<double>(delta);
  }
}

void MetricsRegistry::AddLiesCaught(int64_t outputs_refused, int64_t peers_banned) {
  Add("swarm_outputs_refused_total", {}, static_cast<double>(outputs_refused));
  Add("swarm_peers_banned_total", {}, static_cast<double>(peers_banned));
}

void MetricsRegistry::AddBytesSent(std::string_view codec, uint64_t bytes) {
  Add("swarm_bytes_sent_total", {std::string(codec)}, static_cast<double>(bytes));
}

void MetricsRegistry::SetKvCacheUse(std::string_view peer_id, int64_t used_tokens,
                                    int64_t capacity_tokens, size_t bytes_per_token) {
  Set("swarm_kv_cache_used_tokens", {std::string(peer_id)}, static_cast<double>(used_tokens));
  Set("swarm_kv_cache_capacity_tokens", {std::string(peer_id)},
      static_cast<double>(capacity_tokens));
  if (bytes_per_token == 0) return;
  const auto per_token = static_cast<double>(bytes_per_token);
  Set("swarm_kv_cache_used_bytes", {std::string(peer_id)},
      static_cast<double>(used_tokens) * per_token);
  Set("swarm_kv_cache_capacity_bytes", {std::string(peer_id)},
      static_cast<double>(capacity_tokens) * per_token);
}

std::string MetricsRegistry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + f.help + "\n";
    out += "# TYPE " + name + " ";
    out += f.type == Type::kCounter ? "counter" : f.type == Type::kGauge ? "gauge" : "histogram";
    out += '\n';
    // A family without labels shows 0 before its first event, so dashboards see it exists.
    if (f.series.empty() && f.label_names.empty()) {
      if (f.type == Type::kHistogram) {
        out += name + "_bucket{le=\"+Inf\"} 0\n" + name + "_sum 0\n" + name + "_count 0\n";
      } else {
        out += name + " 0\n";
      }
      continue;
    }
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::kHistogram) {
        out += name;
        AppendLabels(out, f.label_names, labels);
        out += ' ' + FormatNumber(s.value) + '\n';
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t b = 0; b < s.buckets.size(); ++b) {
        cumulative += s.buckets[b];
        out += name + "_bucket";
        AppendLabels(out, f.label_names, labels, "le",
                     b < f.bounds.size() ? FormatNumber(f.bounds[b]) : "+Inf");
        out += ' ' + FormatNumber(static_cast<double>(cumulative)) + '\n';
      }
      out += name + "_sum";
      AppendLabels(out, f.label_names, labels);
      out += ' ' + FormatNumber(s.sum) + '\n';
      out += name + "_count";
      AppendLabels(out, f.label_names, labels);
      out += ' ' + FormatNumber(static_cast<double>(s.count)) + '\n';
    }
  }
  return out;
}

double MetricsRegistry::Value(std::string_view family,
                              const std::vector<std::string>& labels) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(family);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(labels);
  return s == it->second.series.end() ? 0 : s->second.value;
}

double MetricsRegistry::Total(std::string_view family) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(family);
  if (it == families_.end()) return 0;
  double total = 0;
  for (const auto& [labels, series] : it->second.series) total += series.value;
  return total;
}

uint64_t MetricsRegistry::HistogramCount(std::string_view family,
                                         const std::vector<std::string>& labels) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(family);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(labels);
  return s == it->second.series.end() ? 0 : s->second.count;
}

double MetricsRegistry::HistogramSum(std::string_view family,
                                     const std::vector<std::string>& labels) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(family);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(labels);
  return s == it->second.series.end() ? 0 : s->second.sum;
}

}  // namespace swarm::gateway
