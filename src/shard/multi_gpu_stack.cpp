#include "shard/multi_gpu_stack.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "shard/block_forward.h"

namespace swarm::shard {

// One backend's share of the blocks with its weights and scratch activations.
struct MultiGpuStack::Segment {
  kernels::Backend* backend = nullptr;
  size_t index = 0;                          // position in segments_ and in each cache's parts
  kernels::GraphCapture* capture = nullptr;  // the backend's, if it can capture graphs
  int64_t first = 0;
  int64_t last = 0;
  std::vector<model::BlockWeights> blocks;  // backend-resident views
  std::vector<std::unique_ptr<kernels::Buffer>> storage;

  BlockActivations act;  // scratch activations in the backend's memory
};

// The captured graphs of one batch shape, one per segment; empty until the shape's second step.
struct MultiGpuStack::GraphSet {
  std::vector<std::unique_ptr<kernels::StepGraph>> graphs;
};

namespace {

absl::StatusOr<kernels::Weight> Prepare(kernels::Backend& backend, const kernels::Weight& host,
                                        std::vector<std::unique_ptr<kernels::Buffer>>& storage) {
  if (host.data == nullptr) return host;  // absent optional tensor (e.g. no QKV bias)
  return backend.PrepareWeight(host, storage);
}

}  // namespace

MultiGpuStack::MultiGpuStack(const model::ModelConfig& config, const MultiGpuOptions& options)
    : config_(config), options_(options) {}

MultiGpuStack::~MultiGpuStack() {
  // Graphs first: they name the segments' scratch and the caches' memory.
  graphs_.clear();
}

absl::StatusOr<std::unique_ptr<MultiGpuStack>> MultiGpuStack::Create(
    std::vector<kernels::Backend*> backends, const model::ModelConfig& config,
    const std::vector<model::BlockWeights>& host_blocks, const MultiGpuOptions& options) {
  if (host_blocks.empty()) return absl::InvalidArgumentError("a block stack needs >= 1 block");
  if (backends.empty()) return absl::InvalidArgumentError("a block stack needs >= 1 backend");
  for (size_t i = 0; i < host_blocks.size(); ++i) {
    if (host_blocks[i].layer != host_blocks.front().layer + static_cast<int64_t>(i)) {
      return absl::InvalidArgumentError("block weights are not a contiguous range");
    }
  }
  const int64_t n_blocks = static_cast<int64_t>(host_blocks.size());
  const int64_t n_backends = static_cast<int64_t>(backends.size());
  if (n_backends > n_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat(n_backends, " devices for ", n_blocks, " blocks: each needs at least one"));
  }
  SWARM_RETURN_IF_ERROR(kernels::ValidateKvTypes(options.kv_types, config.head_dim));
  std::unique_ptr<MultiGpuStack> stack(new MultiGpuStack(config, options));
  stack->first_ = host_blocks.front().layer;
  stack->last_ = host_blocks.back().layer + 1;

  int64_t next = 0;
  bool graphs_possible = true;
  for (int64_t i = 0; i < n_backends; ++i) {
    if (backends[i] == nullptr) return absl::InvalidArgumentError("null backend");
    auto segment = std::make_unique<Segment>();
    segment->backend = backends[i];
    segment->index = static_cast<size_t>(i);
    segment->capture = backends[i]->graph_capture();
    // A mixture-of-experts block reads its router's choice on the host mid-step: not capturable.
    graphs_possible = graphs_possible && segment->capture != nullptr && !config.is_moe();
    const int64_t count = n_blocks / n_backends + (i < n_blocks % n_backends ? 1 : 0);
    segment->first = stack->first_ + next;
    segment->last = segment->first + count;
    for (int64_t b = next; b < next + count; ++b) {
      const model::BlockWeights& host = host_blocks[b];
      kernels::Backend& be = *segment->backend;
      auto& storage = segment->storage;
      model::BlockWeights w = host;
      SWARM_ASSIGN_OR_RETURN(w.attn_norm, Prepare(be, host.attn_norm, storage));
      SWARM_ASSIGN_OR_RETURN(w.wq, Prepare(be, host.wq, storage));
      SWARM_ASSIGN_OR_RETURN(w.wk, Prepare(be, host.wk, storage));
      SWARM_ASSIGN_OR_RETURN(w.wv, Prepare(be, host.wv, storage));
      SWARM_ASSIGN_OR_RETURN(w.bq, Prepare(be, host.bq, storage));
      SWARM_ASSIGN_OR_RETURN(w.bk, Prepare(be, host.bk, storage));
      SWARM_ASSIGN_OR_RETURN(w.bv, Prepare(be, host.bv, storage));
      SWARM_ASSIGN_OR_RETURN(w.q_norm, Prepare(be, host.q_norm, storage));
      SWARM_ASSIGN_OR_RETURN(w.k_norm, Prepare(be, host.k_norm, storage));
      SWARM_ASSIGN_OR_RETURN(w.wo, Prepare(be, host.wo, storage));
      SWARM_ASSIGN_OR_RETURN(w.ffn_norm, Prepare(be, host.ffn_norm, storage));
      SWARM_ASSIGN_OR_RETURN(w.w_gate, Prepare(be, host.w_gate, storage));
      SWARM_ASSIGN_OR_RETURN(w.w_up, Prepare(be, host.w_up, storage));
      SWARM_ASSIGN_OR_RETURN(w.w_down, Prepare(be, host.w_down, storage));
      SWARM_RETURN_IF_ERROR(PrepareExperts(be, host, w, storage));
      segment->blocks.push_back(w);
    }
    next += count;
    stack->segments_.push_back(std::move(segment));
  }
  stack->graphs_possible_ = graphs_possible;
  if (n_backends > 1) {
    SWARM_ASSIGN_OR_RETURN(stack->link_, backends.front()->OpenDeviceLink(backends));
  }
  // Uploads run asynchronously: surface any failure now rather than at the first step.
  SWARM_RETURN_IF_ERROR(stack->SynchronizeAll());
  return stack;
}

std::pair<int64_t, int64_t> MultiGpuStack::segment_blocks(int i) const {
  return {segments_[i]->first, segments_[i]->last};
}

std::string MultiGpuStack::devices() const {
  std::vector<std::string> names;
  for (const auto& segment : segments_) names.push_back(segment->backend->name());
  return absl::StrJoin(names, ",");
}

void MultiGpuStack::Park() {
  for (const auto& segment : segments_) segment->backend->Park();
}

void MultiGpuStack::Unpark() {
  // Segments compute one after the other, usually from the first: waking every backend's threads
  // now would have the later ones spin for the CPU meanwhile (they wake when their work comes).
  segments_.front()->backend->Unpark();
}

bool MultiGpuStack::uses_nccl() const { return link_ != nullptr && link_->uses_nccl(); }

std::string MultiGpuStack::Describe() const {
  if (segments_.size() == 1) {
    if (!graphs_possible_ || !options_.use_graphs) return absl::StrCat("backend ", devices());
    return absl::StrCat("backend ", devices(), " (decode steps replayed as CUDA graphs)");
  }
  std::string placement = absl::StrCat("devices ", devices(), " (");
  for (const auto& segment : segments_) {
    absl::StrAppend(&placement, "[", segment->first, ", ", segment->last, ") on ",
                    segment->backend->name(), ", ");
  }
  absl::StrAppend(&placement, "activations by ", uses_nccl() ? "NCCL" : "host memory", ")");
  return placement;
}

absl::StatusOr<std::unique_ptr<SequenceCache>> MultiGpuStack::NewCache(int64_t capacity) {
  std::vector<std::unique_ptr<KvCache>> parts;
  for (const auto& segment : segments_) {
    SWARM_ASSIGN_OR_RETURN(auto part,
                           KvCache::Create(*segment->backend, segment->last - segment->first,
                                           config_.kv_dim(), capacity, options_.kv_types));
    parts.push_back(std::move(part));
  }
  return std::make_unique<SequenceCache>(this, std::move(parts));
}

absl::Status MultiGpuStack::EnsureScratch(int64_t n_tokens) {
  if (n_tokens <= scratch_tokens_) return absl::OkStatus();
  // Captured graphs name the old scratch and host buffers.
  graphs_.clear();
  graph_lru_.clear();
  for (const auto& segment : segments_) {
    Segment& s = *segment;
    SWARM_RETURN_IF_ERROR(s.act.Reserve(*s.backend, config_, n_tokens));
  }
  const int64_t n_embd = config_.n_embd;
  positions_.assign(static_cast<size_t>(n_tokens), 0);
  host_in_.assign(static_cast<size_t>(n_embd * n_tokens), 0.0f);
  host_out_.assign(static_cast<size_t>(n_embd * n_tokens), 0.0f);
  bounce_.assign(static_cast<size_t>(n_embd * n_tokens), 0.0f);
  scratch_tokens_ = n_tokens;
  return absl::OkStatus();
}

absl::Status MultiGpuStack::Forward(std::span<const SequenceStep> steps, int64_t first,
                                    int64_t last, const float* hidden_in, float* hidden_out) {
  // Every cache is this stack's from here on: one part per segment.
  SWARM_ASSIGN_OR_RETURN(const int64_t total, CheckBatch(steps, first, last));
  bool decode = true;
  for (const SequenceStep& step : steps) decode = decode && step.n_tokens == 1;
  Range range{first, last, 0, 0};
  while (segments_[range.begin]->last <= first) ++range.begin;
  range.end = range.begin + 1;
  while (range.end < n_segments() && segments_[range.end]->first < last) ++range.end;

  SWARM_RETURN_IF_ERROR(EnsureScratch(total));
  size_t i = 0;
  for (const SequenceStep& step : steps) {
    for (int64_t t = 0; t < step.n_tokens; ++t) {
      positions_[i++] = static_cast<int32_t>(step.cache->length() + t);
    }
  }

  absl::StatusOr<bool> done = false;
  if (decode && graphs_possible_ && options_.use_graphs) {
    done = ForwardGraphs(steps, range, total, hidden_in, hidden_out);
  }
  absl::Status status = done.status();
  if (status.ok() && !*done) status = ForwardEager(steps, range, total, hidden_in, hidden_out);
  if (!status.ok()) {
    // Drain the queues: nothing may later write into this stack's host buffers.
    SynchronizeAll().IgnoreError();
    return status;
  }
  for (const SequenceStep& step : steps) step.cache->Advance(step.n_tokens);
  return absl::OkStatus();
}

absl::Status MultiGpuStack::ForwardEager(std::span<const SequenceStep> steps, const Range& range,
                                         int64_t n_tokens, const float* hidden_in,
                                         float* hidden_out) {
  const size_t bytes = static_cast<size_t>(config_.n_embd * n_tokens) * sizeof(float);
  Segment& first = *segments_[range.begin];
  SWARM_RETURN_IF_ERROR(first.backend->CopyToBackend(first.act.x, hidden_in, bytes));
  for (int i = range.begin; i < range.end; ++i) {
    SWARM_RETURN_IF_ERROR(RunBlocks(*segments_[i], range, steps, n_tokens));
    if (i + 1 < range.end) SWARM_RETURN_IF_ERROR(PassOn(i, n_tokens));
  }
  Segment& last = *segments_[range.end - 1];
  SWARM_RETURN_IF_ERROR(last.backend->CopyToHost(hidden_out, last.act.x, bytes));
  return SynchronizeAll();
}

absl::StatusOr<bool> MultiGpuStack::ForwardGraphs(std::span<const SequenceStep> steps,
                                                  const Range& range, int64_t n_tokens,
                                                  const float* hidden_in, float* hidden_out) {
  // The graphs bake in the blocks they run and every sequence's KV addresses (and, through them,
  // capacities).
  auto as_key = [](int64_t value) {
    return reinterpret_cast<const void*>(static_cast<uintptr_t>(value));
  };
  std::vector<const void*> key = {as_key(range.first), as_key(range.last)};
  for (const SequenceStep& step : steps) {
    for (size_t p = 0; p < step.cache->n_parts(); ++p) {
      KvCache& part = step.cache->part(p);
      key.push_back(part.keys(0));
      key.push_back(as_key(part.capacity()));
    }
  }
  auto it = graphs_.find(key);
  graph_lru_.remove(key);
  graph_lru_.push_front(key);
  if (it == graphs_.end()) {
    // First sighting: run it eagerly, which also allocates any scratch the capture will need.
    graphs_[key] = std::make_unique<GraphSet>();
    while (graph_lru_.size() > std::max<size_t>(options_.max_graphs, 1)) {
      graphs_.erase(graph_lru_.back());
      graph_lru_.pop_back();
    }
    return false;
  }
  GraphSet& set = *it->second;
  const size_t bytes = static_cast<size_t>(config_.n_embd * n_tokens) * sizeof(float);
  auto drop = [&] {
    graphs_.erase(key);
    graph_lru_.remove(key);
  };
  if (set.graphs.empty()) {
    // Inputs and positions come from this stack's own host buffers at fixed addresses.
    // The backend gives each staged copy a 64-byte aligned slot: the input and output, each
    // sequence's one-token position array, and the whole batch's positions.
    const size_t staging = 2 * (bytes + 64) + (static_cast<size_t>(n_tokens) + 2) * 64 +
                           static_cast<size_t>(n_tokens) * sizeof(int32_t) + (size_t{64} << 10);
    for (int i = range.begin; i < range.end; ++i) {
      Segment& s = *segments_[i];
      if (!s.capture->BeginCapture(staging).ok()) {
        // Not capturable now (no pinned memory, a pending error): stay eager. Dropping the set
        // also drops the graphs of the segments before this one, which must not be replayed
        // without this segment's.
        drop();
        return false;
      }
      absl::Status status = absl::OkStatus();
      if (i == range.begin) status = s.backend->CopyToBackend(s.act.x, host_in_.data(), bytes);
      if (status.ok()) status = RunBlocks(s, range, steps, n_tokens);
      if (status.ok() && i + 1 == range.end) {
        status = s.backend->CopyToHost(host_out_.data(), s.act.x, bytes);
      }
      auto graph = s.capture->EndCapture();
      if (!status.ok() || !graph.ok()) {
        // Not capturable (e.g. scratch the eager path has yet to allocate): stay eager.
        drop();
        return false;
      }
      set.graphs.push_back(std::move(*graph));
    }
  }
  std::memcpy(host_in_.data(), hidden_in, bytes);
  for (int i = range.begin; i < range.end; ++i) {
    const absl::Status launched = segments_[i]->capture->Launch(*set.graphs[i - range.begin]);
    if (absl::IsFailedPrecondition(launched)) {
      // Stale (a backend reallocated its scratch): the eager path redoes the whole step, and
      // rewrites whatever an earlier segment's replay already stored.
      drop();
      return false;
    }
    SWARM_RETURN_IF_ERROR(launched);
    if (i + 1 < range.end) SWARM_RETURN_IF_ERROR(PassOn(i, n_tokens));
  }
  SWARM_RETURN_IF_ERROR(SynchronizeAll());
  std::memcpy(hidden_out, host_out_.data(), bytes);
  ++graph_replays_;
  return true;
}

absl::Status MultiGpuStack::PassOn(int from, int64_t n_tokens) {
  Segment& src = *segments_[from];
  Segment& dst = *segments_[from + 1];
  const size_t count = static_cast<size_t>(config_.n_embd * n_tokens);
  if (link_ != nullptr) return link_->Transfer(from, src.act.x, from + 1, dst.act.x, count);
  // Backends without a device link meet in host memory.
  SWARM_RETURN_IF_ERROR(src.backend->CopyToHost(bounce_.data(), src.act.x, count * sizeof(float)));
  SWARM_RETURN_IF_ERROR(src.backend->Synchronize());
  return dst.backend->CopyToBackend(dst.act.x, bounce_.data(), count * sizeof(float));
}

absl::Status MultiGpuStack::SynchronizeAll() {
  absl::Status first_error = absl::OkStatus();
  for (const auto& segment : segments_) {
    absl::Status status = segment->backend->Synchronize();
    if (first_error.ok() && !status.ok()) first_error = std::move(status);
  }
  return first_error;
}

// RunBlock (block_forward.h), block after block, as BlockStack runs it; MultiGpuStackTest checks
// that both give the same bits.
absl::Status MultiGpuStack::RunBlocks(Segment& s, const Range& range,
                                      std::span<const SequenceStep> steps, int64_t n_tokens) {
  const int64_t from = std::max(range.first, s.first) - s.first;
  const int64_t to = std::min(range.last, s.last) - s.first;
  auto cache_of = [&s](const SequenceStep& step) -> KvCache& { return step.cache->part(s.index); };
  for (int64_t local = from; local < to; ++local) {
    SWARM_RETURN_IF_ERROR(RunBlock(*s.backend, config_, s.blocks[static_cast<size_t>(local)], local,
                                   steps, cache_of, positions_.data(), n_tokens, s.act));
  }
  return absl::OkStatus();
}

}  // namespace swarm::shard
