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

// The CUDA backend's DeviceLink (CudaBackend::OpenDeviceLink opens one).
class NcclLink final : public DeviceLink {
 public:
  // One NCCL communicator rank per distinct device among `backends` (ncclCommInitAll); none when
  // they all share one device.
  static absl::StatusOr<std::unique_ptr<NcclLink>> Create(std::vector<CudaBackend*> backends);
  ~NcclLink() override;
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  absl::Status Transfer(int from, const float* src, int to, float* dst, size_t count) override;
  bool uses_nccl() const override;

 private:
  struct State;
  explicit NcclLink(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace swarm::kernels
