#include "peer/block_placement.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include "absl/strings/str_cat.h"

namespace swarm::peer {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool NearlyEqual(double a, double b) {
  return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
}

int64_t CountUncovered(const std::vector<double>& t) {
  return std::count_if(t.begin(), t.end(), [](double v) { return v <= 0; });
}

double MinOf(const std::vector<double>& t) {
  return t.empty() ? 0 : *std::min_element(t.begin(), t.end());
}

void AddRange(std::vector<double>& t, registry::BlockRange r, double v) {
  const int32_t n = static_cast<int32_t>(t.size());
  for (int32_t i = std::max(r.first, 0); i < std::min(r.last, n); ++i) t[i] += v;
}

}  // namespace

double PeerBlockThroughput(double tps_per_block, int64_t span, double network_tps) {
  if (!(tps_per_block > 0) || !std::isfinite(tps_per_block) || span <= 0) return 0;
  double t = tps_per_block / static_cast<double>(span);
  if (network_tps > 0 && std::isfinite(network_tps)) t = std::min(t, network_tps);
  return t;
}

double PeerBlockThroughput(const registry::PeerRecord& peer) {
  return PeerBlockThroughput(peer.decode_tps_per_block, peer.blocks.size(), peer.network_tps);
}

std::vector<double> SwarmThroughput(const registry::RegistrySnapshot& snapshot, int64_t n_blocks,
                                    const registry::PeerId* exclude) {
  std::vector<double> t(static_cast<size_t>(std::clamp<int64_t>(n_blocks, 0, registry::kMaxBlocks)),
                        0.0);
  for (const registry::PeerRecord& p : snapshot) {
    if (p.state == registry::PeerState::kOffline) continue;
    if (exclude && p.peer_id == *exclude) continue;
    // A peer that serves blocks but has not measured yet still covers them: count a token
    // amount so coverage is visible, without claiming real throughput.
    double v = PeerBlockThroughput(p);
    if (v <= 0) v = 1e-6;
    AddRange(t, p.blocks, v);
  }
  return t;
}

registry::BlockRange ChooseBlocksFromThroughput(const std::vector<double>& t,
                                                int64_t num_blocks_to_serve, double mine) {
  const int32_t n = static_cast<int32_t>(t.size());
  const int32_t w = static_cast<int32_t>(std::clamp<int64_t>(num_blocks_to_serve, 1, n));
  if (n == 0) return registry::BlockRange{0, 0};
  // prefix_min[i] = min t[0, i); suffix_min[i] = min t[i, n).
  std::vector<double> prefix_min(n + 1, kInf), suffix_min(n + 1, kInf);
  for (int32_t i = 0; i < n; ++i) prefix_min[i + 1] = std::min(prefix_min[i], t[i]);
  for (int32_t i = n - 1; i >= 0; --i) suffix_min[i] = std::min(suffix_min[i + 1], t[i]);

  // Sliding-window minimum over t[s, s + w).
  std::vector<double> window_min(n - w + 1);
  std::deque<int32_t> dq;
  for (int32_t i = 0; i < n; ++i) {
    while (!dq.empty() && t[dq.back()] >= t[i]) dq.pop_back();
    dq.push_back(i);
    if (dq.front() <= i - w) dq.pop_front();
    if (i >= w - 1) window_min[i - w + 1] = t[dq.front()];
  }

  double best_result = -kInf;
  std::vector<int32_t> tied;
  for (int32_t s = 0; s + w <= n; ++s) {
    const double result =
        std::min({prefix_min[s], suffix_min[s + w], window_min[s] + std::max(mine, 0.0)});
    if (tied.empty() || (result > best_result && !NearlyEqual(result, best_result))) {
      best_result = result;
      tied.assign(1, s);
    } else if (NearlyEqual(result, best_result)) {
      tied.push_back(s);
    }
  }
  int32_t best = tied.front();
  if (tied.size() > 1) {
    std::vector<double> best_sorted(t.begin() + best, t.begin() + best + w);
    std::sort(best_sorted.begin(), best_sorted.end());
    std::vector<double> cur(w);
    for (size_t k = 1; k < tied.size(); ++k) {
      const int32_t s = tied[k];
      cur.assign(t.begin() + s, t.begin() + s + w);
      std::sort(cur.begin(), cur.end());
      if (cur < best_sorted) {  // strictly smaller: ties keep the lower start
        best = s;
        best_sorted.swap(cur);
      }
    }
  }
  return registry::BlockRange{best, best + w};
}

absl::StatusOr<registry::BlockRange> ChooseBlocks(const registry::RegistrySnapshot& snapshot,
                                                  int64_t n_blocks, int64_t num_blocks_to_serve,
                                                  double my_tps_per_block) {
  if (n_blocks <= 0 || n_blocks > registry::kMaxBlocks) {
    return absl::InvalidArgumentError(absl::StrCat("placement: bad block count ", n_blocks));
  }
  if (num_blocks_to_serve <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "placement: number of blocks to serve must be positive, got ", num_blocks_to_serve));
  }
  if (!std::isfinite(my_tps_per_block) || my_tps_per_block < 0) {
    return absl::InvalidArgumentError("placement: bad throughput");
  }
  const int64_t w = std::min(num_blocks_to_serve, n_blocks);
  return ChooseBlocksFromThroughput(SwarmThroughput(snapshot, n_blocks), w,
                                    PeerBlockThroughput(my_tps_per_block, w));
}

std::optional<registry::BlockRange> ShouldMove(const registry::RegistrySnapshot& snapshot,
                                               const registry::PeerRecord& me, int64_t n_blocks,
                                               const MoveOptions& options) {
  if (n_blocks <= 0 || n_blocks > registry::kMaxBlocks || me.blocks.empty() ||
      me.blocks.first < 0 || me.blocks.last > n_blocks) {
    return std::nullopt;
  }
  const double mine = std::max(PeerBlockThroughput(me), 1e-6);
  std::vector<double> without = SwarmThroughput(snapshot, n_blocks, &me.peer_id);
  std::vector<double> now = without;
  AddRange(now, me.blocks, mine);

  const registry::BlockRange candidate =
      ChooseBlocksFromThroughput(without, me.blocks.size(), mine);
  if (candidate == me.blocks) return std::nullopt;
  // Blocks only I serve must stay inside the new range.
  for (int32_t i = me.blocks.first; i < me.blocks.last; ++i) {
    if (without[i] <= 0 && !candidate.Contains(i)) return std::nullopt;
  }
  std::vector<double> after = without;
  AddRange(after, candidate, mine);

  const int64_t holes_now = CountUncovered(now), holes_after = CountUncovered(after);
  if (holes_after < holes_now) return candidate;
  if (holes_now > 0 || holes_after > 0) return std::nullopt;
  const double weakest_now = MinOf(now), weakest_after = MinOf(after);
  if (weakest_after > weakest_now * options.min_improvement) return candidate;
  return std::nullopt;
}

}  // namespace swarm::peer
