// Moves activations between CUDA backends on the GPUs of this process: NCCL point-to-point
// (ncclSend/ncclRecv) between different devices (a peer-to-peer device copy when the build has no
// NCCL), a stream-ordered device copy between backends on the same device. Transfers are queued on
// the backends' streams, ordered after the work already queued there; nothing waits on the host.
// Borrows the backends (they must outlive it); one thread uses it at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_backend.h"

namespace swarm::kernels {

class NcclLink {
 public:
  // One NCCL communicator rank per distinct device among `backends` (ncclCommInitAll); none when
  // they all share one device.
  static absl::StatusOr<std::unique_ptr<NcclLink>> Create(std::vector<CudaBackend*> backends);
  ~NcclLink();
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  // dst: [count] floats in the memory of backends[to] = src: [count] floats in the memory of
  // backends[from]. Work queued on `to` afterwards sees the data; work queued on `from`
  // afterwards may overwrite src.
  absl::Status Transfer(int from, const float* src, int to, float* dst, size_t count);

  // True when transfers between different devices go through NCCL.
  bool uses_nccl() const;

 private:
  struct State;
  explicit NcclLink(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace swarm::kernels
