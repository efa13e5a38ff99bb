// Limits at the wire: a receiver that knows what it asked for refuses a tensor that declares
// another shape or codec before allocating or inflating anything (an 8 KiB zstd frame declaring
// 256 MiB once cost a client 460 MB), a zstd payload that would inflate past its declared size is
// refused with no more memory than the declared size, and a peer pushes only to tcp:// hops.
// Allocations are measured with a replaced global operator new (this binary only).
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "absl/strings/match.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<size_t> g_largest{0};

void* Allocate(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) {
    size_t seen = g_largest.load(std::memory_order_relaxed);
    while (n > seen && !g_largest.compare_exchange_weak(seen, n)) {
    }
  }
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t n) { return Allocate(n); }
void* operator new[](size_t n) { return Allocate(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace swarm::transport {
namespace {

constexpr uint32_t kEmbd = 64;

// The largest single allocation while `f` runs.
template <typename F>
size_t LargestAllocation(F&& f) {
  g_largest.store(0);
  g_counting.store(true);
  f();
  g_counting.store(false);
  return g_largest.load();
}

// One zstd frame holding `bytes` zero bytes (declared), streamed from a small buffer.
std::vector<uint8_t> ZeroFrame(uint64_t bytes) {
  std::vector<uint8_t> zeros(size_t{1} << 20, 0);
  std::vector<uint8_t> frame(1 << 20);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setPledgedSrcSize(cctx, bytes);
  ZSTD_outBuffer out{frame.data(), frame.size(), 0};
  for (uint64_t done = 0; done < bytes;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), bytes - done));
    done += n;
    ZSTD_inBuffer in{zeros.data(), n, 0};
    const ZSTD_EndDirective mode = done == bytes ? ZSTD_e_end : ZSTD_e_continue;
    size_t left;
    do {
      left = ZSTD_compressStream2(cctx, &out, &in, mode);
      EXPECT_FALSE(ZSTD_isError(left)) << ZSTD_getErrorName(left);
    } while (!ZSTD_isError(left) && (in.pos < in.size || (mode == ZSTD_e_end && left != 0)));
  }
  ZSTD_freeCCtx(cctx);
  frame.resize(out.pos);
  return frame;
}

// A peer's output as the client receives it: declared shape and codec, and the frame.
DecodedMessage Output(std::vector<uint32_t> shape, const Codec& codec, std::vector<uint8_t> frame) {
  StepOutput output;
  output.n_tokens = static_cast<int32_t>(shape[1]);
  output.first_block = 0;
  output.last_block = 1;
  output.tensor = {codec, std::move(shape)};
  auto wire = EncodeMessage(1, output, Payload::FromVector(std::move(frame)));
  EXPECT_TRUE(wire.ok()) << wire.status();
  auto decoded = DecodeMessage(*wire);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return *decoded;
}

const Codec kF32Zstd{.dtype = Dtype::kF32, .zstd = true};

TEST(WireLimitsTest, ADeclaredShapeOtherThanAskedIsRefusedBeforeAllocating) {
  // 8 KiB or so that declares [1024, 65536] f32: 256 MiB once inflated.
  const uint64_t declared = uint64_t{1024} * 65536 * 4;
  std::vector<uint8_t> bomb = ZeroFrame(declared);
  ASSERT_LT(bomb.size(), 64u * 1024);
  const DecodedMessage message = Output({1024, 65536}, kF32Zstd, bomb);
  const TensorDesc asked{kF32Zstd, {kEmbd, 1}};
  absl::StatusOr<std::vector<float>> values;
  const size_t largest = LargestAllocation([&] { values = DecodeActivations(message, asked); });
  EXPECT_EQ(values.status().code(), absl::StatusCode::kDataLoss) << values.status();
  EXPECT_TRUE(absl::StrContains(values.status().message(), "declared [1024, 65536]"))
      << values.status();
  EXPECT_LT(largest, size_t{64} << 10) << "bytes allocated for a refused tensor";

  // Another codec than asked is refused the same way.
  std::vector<float> x(kEmbd, 0.5f);
  auto f16 = EncodeActivations(x, {kEmbd, 1}, Codec{.dtype = Dtype::kF16});
  ASSERT_TRUE(f16.ok()) << f16.status();
  const DecodedMessage other =
      Output({kEmbd, 1}, f16->desc.codec,
             std::vector<uint8_t>(f16->bytes.data(), f16->bytes.data() + f16->bytes.size()));
  EXPECT_EQ(DecodeActivations(other, TensorDesc{Codec{}, {kEmbd, 1}}).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(WireLimitsTest, APayloadThatInflatesPastItsDeclaredSizeIsRefused) {
  // The right shape, and a first frame that declares the right size; a second frame behind it
  // would inflate to 16 MiB more.
  const uint64_t expected = uint64_t{kEmbd} * 4 * 4;
  std::vector<uint8_t> payload = ZeroFrame(expected);
  const std::vector<uint8_t> more = ZeroFrame(uint64_t{16} << 20);
  payload.insert(payload.end(), more.begin(), more.end());
  const DecodedMessage message = Output({kEmbd, 4}, kF32Zstd, payload);
  absl::StatusOr<std::vector<float>> values;
  const size_t largest = LargestAllocation([&] {
    values = DecodeActivations(message, TensorDesc{kF32Zstd, {kEmbd, 4}});
  });
  EXPECT_EQ(values.status().code(), absl::StatusCode::kDataLoss) << values.status();
  EXPECT_LE(largest, size_t{64} << 10);

  // The measure sees allocations: the same output, honest, decodes into its declared size.
  const DecodedMessage honest = Output({kEmbd, 4}, kF32Zstd, ZeroFrame(expected));
  const size_t used = LargestAllocation([&] {
    values = DecodeActivations(honest, TensorDesc{kF32Zstd, {kEmbd, 4}});
  });
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->size(), size_t{kEmbd} * 4);
  EXPECT_GE(used, expected);
}

TEST(WireLimitsTest, APeerPushesOnlyToTcpHops) {
  for (const char* ok : {"tcp://127.0.0.1:5555", "tcp://[::1]:80", "tcp://peer-3.example.org:31337",
                         "tcp://10.0.0.5:65535"}) {
    EXPECT_TRUE(ValidatePushEndpoint(ok).ok()) << ok << ": " << ValidatePushEndpoint(ok);
  }
  for (const char* bad :
       {"ipc:///tmp/swarm.sock", "inproc://swarm-dealer-monitor-1", "udp://127.0.0.1:5555",
        "pgm://eth0;239.192.1.1:5555", "not-an-endpoint", "tcp://", "tcp://:5555", "tcp://host",
        "tcp://*:5555", "tcp://host:0", "tcp://host:65536", "tcp://host:12ab",
        "tcp://127.0.0.1:4000;10.0.0.1:5555", "tcp://host name:5", "TCP://127.0.0.1:5555"}) {
    const absl::Status status = ValidatePushEndpoint(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(status.message(), "refused")) << status;
  }
  EXPECT_TRUE(absl::StrContains(ValidatePushEndpoint("ipc:///x").message(), "tcp://"));
}

}  // namespace
}  // namespace swarm::transport
