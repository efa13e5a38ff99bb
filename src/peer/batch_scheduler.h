// Which queued steps the peer computes next, and how they are grouped into forward passes. Pure
// functions of a small description of the queue (the server loop keeps the steps themselves);
// any thread.
//
// The rules: steps are taken in arrival order, at most one per session (its next one: a
// session's later step needs the cache the earlier one fills), while the batch's tokens stay
// within max_batch_tokens; a step that does not fit is skipped, not a barrier (a smaller one
// behind it may still fit), and the first step is always taken, however long. The chosen steps
// then run grouped by the block range their sessions use, one forward per range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "transport/protocol.h"

namespace swarm::peer {

// What the scheduler knows of a queued step.
struct QueuedStep {
  transport::SessionId session;
  int64_t n_tokens = 0;
};

// Indices into `queue` of the steps of the next batch, ascending (the rest stay queued, in order).
std::vector<size_t> ChooseBatch(std::span<const QueuedStep> queue, int64_t max_batch_tokens);

// The blocks [first, last) a chosen step's session runs through.
struct StepBlocks {
  uint32_t first_block = 0;
  uint32_t last_block = 0;
};

// One forward pass: the steps (indices into the list given to GroupByBlocks) that use the same
// blocks, in their order in that list.
struct ForwardGroup {
  uint32_t first_block = 0;
  uint32_t last_block = 0;
  std::vector<size_t> steps;
};

// Groups ordered by (first_block, last_block).
std::vector<ForwardGroup> GroupByBlocks(std::span<const StepBlocks> steps);

}  // namespace swarm::peer
