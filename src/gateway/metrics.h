// A small Prometheus metrics registry: counters, gauges and histograms with labels, rendered in the
// text exposition format (version 0.0.4). The server owns one (no global registry) and hands it to
// the engine as a MetricsSink with every generation. Thread-safe: any thread may record or render.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/metrics_sink.h"

namespace swarm::gateway {

class MetricsRegistry final : public MetricsSink {
 public:
  // A family stops taking new label sets beyond this many (peer ids come from the network).
  static constexpr size_t kMaxSeriesPerFamily = 512;

  MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Generic recording; `labels` are values for the family's label names, in order. Unknown family
  // names or a wrong number of labels are ignored (a bug, never worth crashing a server for).
  void Add(std::string_view family, const std::vector<std::string>& labels, double value = 1);
  void Set(std::string_view family, const std::vector<std::string>& labels, double value);
  void Observe(std::string_view family, const std::vector<std::string>& labels, double value);
  // Replaces every series of a gauge family (for snapshots where peers come and go).
  void ReplaceGauge(std::string_view family,
                    const std::vector<std::pair<std::vector<std::string>, double>>& series);

  // Gateway-level events.
  void CountRequest(std::string_view endpoint, int status);
  void AddTokens(int64_t prompt_tokens, int64_t completion_tokens);
  void ObserveTokenLatency(double seconds);  // time between consecutive tokens
  void ObserveTimeToFirstToken(double seconds);

  // MetricsSink
  void ObservePeerStep(std::string_view peer_id, double seconds) override;
  void AddFailover() override;
  void AddBytesSent(std::string_view codec, uint64_t bytes) override;
  void SetKvCacheUse(std::string_view peer_id, int64_t used_tokens, int64_t capacity_tokens,
                     size_t bytes_per_token) override;
  void AddVerification(std::string_view span, int64_t verified, int64_t unverified,
                       int64_t mismatches) override;
  void AddLiesCaught(int64_t outputs_refused, int64_t peers_banned) override;
  void AddSpeculation(int64_t drafted, int64_t accepted, int64_t traversals,
                      int64_t tokens) override;
  void AddChunksInFlight(int64_t delta) override;

  // The whole registry in Prometheus text format.
  std::string Render() const;

  // Value of one counter or gauge series (0 when absent); for tests and the dashboard.
  double Value(std::string_view family, const std::vector<std::string>& labels) const;
  // Sum of a counter or gauge family's series (0 when absent).
  double Total(std::string_view family) const;
  // Number of observations of one histogram series.
  uint64_t HistogramCount(std::string_view family, const std::vector<std::string>& labels) const;
  // Sum of the observations of one histogram series (0 when absent).
  double HistogramSum(std::string_view family, const std::vector<std::string>& labels) const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    double value = 0;               // counter / gauge
    std::vector<uint64_t> buckets;  // histogram: per bucket (not cumulative), last is +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string help;
    Type type = Type::kCounter;
    std::vector<std::string> label_names;
    std::vector<double> bounds;  // histogram upper bounds, ascending
    std::map<std::vector<std::string>, Series> series;
  };

  void Define(std::string name, Type type, std::string help, std::vector<std::string> label_names,
              std::vector<double> bounds = {});
  // Null when the family is unknown, the labels do not fit or the family is full.
  Series* FindOrCreate(std::string_view family, const std::vector<std::string>& labels, Type type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace swarm::gateway
