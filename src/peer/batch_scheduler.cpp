#include "peer/batch_scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"

namespace swarm::peer {

std::vector<size_t> ChooseBatch(std::span<const QueuedStep> queue, int64_t max_batch_tokens) {
  std::vector<size_t> batch;
  absl::flat_hash_set<transport::SessionId> in_batch;
  int64_t tokens = 0;
  for (size_t i = 0; i < queue.size(); ++i) {
    const bool fits = batch.empty() || tokens + queue[i].n_tokens <= max_batch_tokens;
    if (fits && in_batch.insert(queue[i].session).second) {
      tokens += queue[i].n_tokens;
      batch.push_back(i);
    }
  }
  return batch;
}

std::vector<ForwardGroup> GroupByBlocks(std::span<const StepBlocks> steps) {
  std::vector<size_t> order(steps.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(steps[a].first_block, steps[a].last_block) <
           std::pair(steps[b].first_block, steps[b].last_block);
  });
  std::vector<ForwardGroup> groups;
  for (size_t i : order) {
    if (groups.empty() || groups.back().first_block != steps[i].first_block ||
        groups.back().last_block != steps[i].last_block) {
      groups.push_back({steps[i].first_block, steps[i].last_block, {}});
    }
    groups.back().steps.push_back(i);
  }
  return groups;
}

}  // namespace swarm::peer
