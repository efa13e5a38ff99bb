#include "kernels/cuda/nccl_link.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda/cuda_status.h"

#if SWARM_HAVE_NCCL
#include <nccl.h>
#endif

namespace swarm::kernels {

using gpu::CudaStatus;

struct NcclLink::State {
  std::vector<CudaBackend*> backends;
  std::vector<int> devices;  // distinct devices, in first-seen order; rank = index
  std::vector<int> rank_of;  // backend index -> rank
#if SWARM_HAVE_NCCL
  std::vector<ncclComm_t> comms;  // per rank
#endif

  ~State() {
#if SWARM_HAVE_NCCL
    for (ncclComm_t comm : comms) {
      if (comm != nullptr) ncclCommDestroy(comm);
    }
#endif
  }

  cudaStream_t stream(int i) const {
    return static_cast<cudaStream_t>(backends[i]->stream_handle());
  }

  // Makes `waiter` wait for the work queued so far on `signaller`.
  absl::Status Order(int signaller, int waiter) {
    const int dev = backends[signaller]->device();
    SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
    cudaEvent_t event = nullptr;
    SWARM_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), dev,
                                     "creating an event"));
    absl::Status status =
        CudaStatus(cudaEventRecord(event, stream(signaller)), dev, "recording an event");
    if (status.ok()) {
      status = CudaStatus(cudaStreamWaitEvent(stream(waiter), event, 0), backends[waiter]->device(),
                          "waiting for an event");
    }
    cudaEventDestroy(event);  // released once the event completes
    return status;
  }
};

#if SWARM_HAVE_NCCL
namespace {

absl::Status NcclStatus(ncclResult_t result, std::string_view what) {
  if (result == ncclSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat("NCCL: ", std::string(what), ": ", ncclGetErrorString(result));
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(message);
    case ncclRemoteError:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace
#endif

absl::StatusOr<std::unique_ptr<NcclLink>> NcclLink::Create(std::vector<CudaBackend*> backends) {
  if (backends.empty()) return absl::InvalidArgumentError("a link needs at least one backend");
  auto s = std::make_unique<State>();
  s->backends = std::move(backends);
  for (CudaBackend* b : s->backends) {
    if (b == nullptr) return absl::InvalidArgumentError("null backend");
    auto it = std::find(s->devices.begin(), s->devices.end(), b->device());
    if (it == s->devices.end()) {
      s->devices.push_back(b->device());
      it = s->devices.end() - 1;
    }
    s->rank_of.push_back(static_cast<int>(it - s->devices.begin()));
  }
#if SWARM_HAVE_NCCL
  if (s->devices.size() > 1) {
    s->comms.assign(s->devices.size(), nullptr);
    SWARM_RETURN_IF_ERROR(NcclStatus(
        ncclCommInitAll(s->comms.data(), static_cast<int>(s->devices.size()), s->devices.data()),
        absl::StrCat("initializing communicators over ", s->devices.size(), " GPUs")));
  }
#endif
  return std::unique_ptr<NcclLink>(new NcclLink(std::move(s)));
}

NcclLink::NcclLink(std::unique_ptr<State> state) : s_(std::move(state)) {}
NcclLink::~NcclLink() = default;

bool NcclLink::uses_nccl() const {
#if SWARM_HAVE_NCCL
  return !s_->comms.empty();
#else
  return false;
#endif
}

absl::Status NcclLink::Transfer(int from, const float* src, int to, float* dst, size_t count) {
  const int n = static_cast<int>(s_->backends.size());
  if (from < 0 || from >= n || to < 0 || to >= n) {
    return absl::InvalidArgumentError("transfer between unknown backends");
  }
  if (count == 0 || (from == to && src == dst)) return absl::OkStatus();
  const size_t bytes = count * sizeof(float);
  const int src_dev = s_->backends[from]->device(), dst_dev = s_->backends[to]->device();
  if (src_dev == dst_dev) {
    if (from != to) SWARM_RETURN_IF_ERROR(s_->Order(from, to));
    SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dst_dev), dst_dev, "selecting the device"));
    SWARM_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s_->stream(to)),
                   dst_dev, "device copy"));
    if (from != to) SWARM_RETURN_IF_ERROR(s_->Order(to, from));
    return absl::OkStatus();
  }
#if SWARM_HAVE_NCCL
  SWARM_RETURN_IF_ERROR(NcclStatus(ncclGroupStart(), "group start"));
  const ncclResult_t sent = ncclSend(src, count, ncclFloat, s_->rank_of[to],
                                     s_->comms[s_->rank_of[from]], s_->stream(from));
  const ncclResult_t received = ncclRecv(dst, count, ncclFloat, s_->rank_of[from],
                                         s_->comms[s_->rank_of[to]], s_->stream(to));
  const ncclResult_t ended = ncclGroupEnd();
  SWARM_RETURN_IF_ERROR(NcclStatus(sent, "send"));
  SWARM_RETURN_IF_ERROR(NcclStatus(received, "receive"));
  return NcclStatus(ended, "group end");
#else
  SWARM_RETURN_IF_ERROR(s_->Order(from, to));
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dst_dev), dst_dev, "selecting the device"));
  SWARM_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpyPeerAsync(dst, dst_dev, src, src_dev, bytes, s_->stream(to)), dst_dev,
                 "peer copy"));
  return s_->Order(to, from);
#endif
}

}  // namespace swarm::kernels
