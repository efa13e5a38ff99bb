// A block range [first, last) spread over several backends of one peer (its GPUs): backend i runs a
// contiguous share of the blocks and hands the hidden states to backend i+1 device to device
// through the backends' kernels::DeviceLink (NCCL between CUDA devices), or through host memory
// where they have none. With one CUDA backend it is a BlockStack that replays decode steps as CUDA
// graphs (kernels::GraphCapture). Owns the backend copies of its weights and its scratch; borrows
// the backends and the host weights (both must outlive it).
// A ServingStack: `swarm serve --device A,B,...` serves one. One thread calls Forward() at a time.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "shard/serving_stack.h"

namespace swarm::shard {

struct MultiGpuOptions {
  // Replays decode steps (every sequence one token) of a batch shape seen before as CUDA graphs,
  // when every backend can capture graphs (kernels::GraphCapture). Results are bit-identical either
  // way.
  bool use_graphs = true;
  size_t max_graphs = 8;  // batch shapes kept (least recently used dropped)
  // Element types of the sessions' KV caches (checked with kernels::ValidateKvTypes).
  kernels::KvTypes kv_types = kernels::kDefaultKvTypes;
};

class MultiGpuStack final : public ServingStack {
 public:
  // Splits host_blocks (a contiguous range) over `backends` as evenly as possible, earlier
  // backends taking the remainder. InvalidArgument when there are more backends than blocks.
  static absl::StatusOr<std::unique_ptr<MultiGpuStack>> Create(
      std::vector<kernels::Backend*> backends, const model::ModelConfig& config,
      const std::vector<model::BlockWeights>& host_blocks, const MultiGpuOptions& options = {});
  ~MultiGpuStack();
  MultiGpuStack(const MultiGpuStack&) = delete;
  MultiGpuStack& operator=(const MultiGpuStack&) = delete;

  int64_t first_block() const override { return first_; }
  int64_t last_block() const override { return last_; }
  const model::ModelConfig& config() const override { return config_; }
  std::string devices() const override;
  // "backend cuda:0 (decode steps replayed as CUDA graphs)" (one segment), "devices cuda:0,cuda:1
  // ([0, 3) on cuda:0, [3, 5) on cuda:1, activations by NCCL)".
  std::string Describe() const override;
  int n_segments() const { return static_cast<int>(segments_.size()); }
  // Blocks [first, last) of segment i (run by backends[i]).
  std::pair<int64_t, int64_t> segment_blocks(int i) const;
  // True when activations pass between devices through NCCL.
  bool uses_nccl() const;
  // Decode steps replayed from a captured graph so far (for tests and benchmarks).
  int64_t graph_replays() const { return graph_replays_; }

  // One KvCache per segment, for that segment's blocks.
  absl::StatusOr<std::unique_ptr<SequenceCache>> NewCache(int64_t capacity) override;
  // Over a sub-range [first, last) of the stack's blocks only the segments that hold some of them
  // run.
  using ServingStack::Forward;
  absl::Status Forward(std::span<const SequenceStep> steps, int64_t first, int64_t last,
                       const float* hidden_in, float* hidden_out) override;
  void Park() override;
  void Unpark() override;

 private:
  struct Segment;
  struct GraphSet;
  // Blocks [first, last) of one forward and the segments [begin, end) that hold them.
  struct Range {
    int64_t first = 0;
    int64_t last = 0;
    int begin = 0;
    int end = 0;
  };

  MultiGpuStack(const model::ModelConfig& config, const MultiGpuOptions& options);
  absl::Status EnsureScratch(int64_t n_tokens);
  absl::Status ForwardEager(std::span<const SequenceStep> steps, const Range& range,
                            int64_t n_tokens, const float* hidden_in, float* hidden_out);
  // Runs the step through captured graphs: OK(true) when it ran, OK(false) when the eager path
  // must run it (first sighting of the shape, or a graph gone stale).
  absl::StatusOr<bool> ForwardGraphs(std::span<const SequenceStep> steps, const Range& range,
                                     int64_t n_tokens, const float* hidden_in, float* hidden_out);
  // The segment's blocks that lie in `range`.
  absl::Status RunBlocks(Segment& segment, const Range& range, std::span<const SequenceStep> steps,
                         int64_t n_tokens);
  absl::Status PassOn(int from, int64_t n_tokens);
  absl::Status SynchronizeAll();

  model::ModelConfig config_;
  MultiGpuOptions options_;
  int64_t first_ = 0;
  int64_t last_ = 0;
  std::vector<std::unique_ptr<Segment>> segments_;
  std::unique_ptr<kernels::DeviceLink> link_;  // null: activations pass through host memory
  bool graphs_possible_ = false;               // every backend can capture graphs

  int64_t scratch_tokens_ = 0;
  // Host memory at fixed addresses (captured graphs read and write them on every replay).
  std::vector<int32_t> positions_;  // [T]
  std::vector<float> host_in_;      // [n_embd, T]
  std::vector<float> host_out_;     // [n_embd, T]
  std::vector<float> bounce_;       // [n_embd, T] between non-CUDA backends

  // Captured decode steps by block range and batch shape: the KV buffers of every sequence
  // (graphs bake in their addresses). A shape is captured the second time it is seen.
  std::map<std::vector<const void*>, std::unique_ptr<GraphSet>> graphs_;
  std::list<std::vector<const void*>> graph_lru_;  // most recent first
  int64_t graph_replays_ = 0;
};

}  // namespace swarm::shard
