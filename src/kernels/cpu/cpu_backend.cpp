#include "kernels/cpu/cpu_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/mapped_file.h"
#include "base/status_macros.h"
#include "kernels/cpu/lane_layout.h"
#include "kernels/cpu/row_panels.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::cpu {
namespace {

constexpr std::align_val_t kAlignment{64};

// Buffers of at least this size (weights rewritten into the backend's layouts, large caches) are
// aligned to it and asked to be backed by transparent huge pages: a matrix streamed from memory
// then misses the TLB once per 2 MiB instead of once per 4 KiB page.
constexpr size_t kHugePage = size_t{2} << 20;

class HostBuffer : public Buffer {
 public:
  HostBuffer(void* data, size_t size, std::align_val_t alignment)
      : data_(data), size_(size), alignment_(alignment) {}
  ~HostBuffer() override { ::operator delete(data_, alignment_); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_;
  size_t size_;
  std::align_val_t alignment_;
};

// Below this many multiply-adds a matrix product runs on the calling thread alone: waking the
// workers would cost more than it saves. The split never changes results (kernels.h).
constexpr double kParallelMatMulWork = 1 << 15;
// Element-wise operations: elements per thread worth the dispatch.
constexpr int64_t kParallelElements = 1 << 14;
// Rows of a matrix product handed out together.
constexpr int64_t kRowGrain = 16;
// Inputs up to this many floats (a batch of decode steps) are remembered for reuse of their
// quantization; larger ones (prompts) are quantized again, comparing would cost as much.
constexpr size_t kX8SourceFloats = size_t{1} << 16;

uint8_t* Align64(uint8_t* p) {
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(const CpuBackendOptions& options) {
  const CpuFeatures features = DetectCpuFeatures();
  const Isa isa = options.isa.value_or(BestIsa(features));
  if (!IsaSupported(isa, features)) {
    return absl::InvalidArgumentError(absl::StrCat("this processor cannot run the ",
                                                   ToAbsl(IsaName(isa)),
                                                   " kernels (it has: ", features.Summary(), ")"));
  }
  if (options.threads < 0 || options.threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("bad thread count ", options.threads));
  }
  const int threads = options.threads > 0 ? options.threads : PhysicalCoreCount();
  return std::unique_ptr<CpuBackend>(new CpuBackend(KernelsFor(isa), threads));
}

std::string CpuBackend::name() const { return absl::StrCat("cpu-", ToAbsl(IsaName(kernels_.isa))); }

absl::StatusOr<std::unique_ptr<Buffer>> CpuBackend::Allocate(size_t bytes) {
  const bool huge = bytes >= kHugePage;
  const std::align_val_t alignment = huge ? std::align_val_t{kHugePage} : kAlignment;
  void* data = ::operator new(std::max<size_t>(bytes, 1), alignment, std::nothrow);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
  }
  // Advice only: where the kernel has no huge pages to give, the buffer keeps 4 KiB pages.
  if (huge) ::madvise(data, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
  return std::make_unique<HostBuffer>(data, bytes, alignment);
}

absl::StatusOr<Weight> CpuBackend::PrepareWeight(const Weight& host,
                                                 std::vector<std::unique_ptr<Buffer>>& storage) {
  auto row_bytes = RowBytes(host.type, host.n_in);
  if (!row_bytes.ok()) return row_bytes.status();
  if (host.type == GgmlType::kQ8_K) {
    return absl::InvalidArgumentError("q8_K is an activation type, not a weight type");
  }
  const int slot = MatMulSlot(host.type);
  const bool has_packed_kernel = slot >= 0 && kernels_.matmul_packed[slot] != nullptr;
  const WeightLayout packed = CpuLayoutOf(host.type);
  if (host.layout != WeightLayout::kGguf) {
    if (!has_packed_kernel || host.layout != packed) {
      return absl::InvalidArgumentError(
          absl::StrCat("a ", ToAbsl(GgmlTypeName(host.type)), " weight in the CPU ",
                       host.layout == WeightLayout::kCpuLanes ? "lane" : "row-panel",
                       " layout reached ", name(), ", which has no kernel for it"));
    }
    return host;
  }
  // Vectors (norm weights, n_out == 1) are read in place by the elementwise ops.
  if (!has_packed_kernel || packed == WeightLayout::kGguf || host.n_out == 1) return host;
  // Rewritten once into the backend's layout, which the kernels read faster (lane_layout.h,
  // row_panels.h).
  const size_t bytes = *row_bytes * static_cast<size_t>(host.n_out);
  SWARM_ASSIGN_OR_RETURN(std::unique_ptr<Buffer> buffer, Allocate(bytes));
  auto* dst = static_cast<uint8_t*>(buffer->data());
  const auto* src = static_cast<const uint8_t*>(host.data);
  if (packed == WeightLayout::kCpuLanes) {
    pool_.ParallelFor(host.n_out, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        RowToLanes(host.type, src + r * *row_bytes, dst + r * *row_bytes, host.n_in);
      }
    });
  } else {
    const int64_t panels = (host.n_out + kPanelRows - 1) / kPanelRows;
    pool_.ParallelFor(panels, 1, [&](int64_t p0, int64_t p1) {
      RowsToPanels(host.type, src, dst, host.n_in, host.n_out, p0, p1);
    });
  }
  if (host.file_mapped) ReleaseMappedPages(src, bytes);
  Weight prepared = host;
  prepared.data = dst;
  prepared.layout = packed;
  prepared.file_mapped = false;
  storage.push_back(std::move(buffer));
  return prepared;
}

absl::Status CpuBackend::CopyToBackend(void* dst, const void* host_src, size_t bytes) {
  if (bytes > 0 && dst != host_src) std::memcpy(dst, host_src, bytes);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyToHost(void* host_dst, const void* src, size_t bytes) {
  if (bytes > 0 && host_dst != src) std::memcpy(host_dst, src, bytes);
  return absl::OkStatus();
}

uint8_t* CpuBackend::ScratchX8(size_t bytes) {
  if (bytes > x8_bytes_) {
    x8_source_valid_ = false;
    x8_raw_.reset(new uint8_t[bytes + 64]);
    x8_ = Align64(x8_raw_.get());
    x8_bytes_ = bytes;
  }
  return x8_;
}

float* CpuBackend::ScratchAttention(size_t floats_per_thread) {
  if (floats_per_thread > attention_floats_) {
    attention_raw_.reset(new float[floats_per_thread * pool_.size() + 16]);
    attention_scratch_ =
        reinterpret_cast<float*>(Align64(reinterpret_cast<uint8_t*>(attention_raw_.get())));
    attention_floats_ = floats_per_thread;
  }
  return attention_scratch_;
}

void CpuBackend::Record(const char* kind, GgmlType type, int64_t n_out, int64_t n_in,
                        int64_t n_tokens, std::chrono::steady_clock::time_point start, double flops,
                        double weight_bytes) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string name = kind;
  if (n_in > 0) {
    absl::StrAppend(&name, " ", ToAbsl(GgmlTypeName(type)), " ", n_out, "x", n_in,
                    n_tokens == 1 ? " T=1" : " T>1");
  }
  for (OpProfile& p : profile_) {
    if (p.name == name) {
      ++p.calls;
      p.seconds += seconds;
      p.flops += flops;
      p.weight_bytes += weight_bytes;
      return;
    }
  }
  profile_.push_back(OpProfile{std::move(name), 1, seconds, flops, weight_bytes});
}

// y: [n_out, T] = w · x, x: [n_in, T]
void CpuBackend::MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  auto start =
      profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  const int slot = MatMulSlot(w.type);
  auto row_bytes = RowBytes(w.type, w.n_in);
  const MatMulFn fn = slot < 0                          ? nullptr
                      : w.layout != WeightLayout::kGguf ? kernels_.matmul_packed[slot]
                                                        : kernels_.matmul[slot];
  if (!row_bytes.ok() || fn == nullptr) {
    // Unreachable for weights that went through PrepareWeight; make the misuse visible.
    std::fill(y, y + w.n_out * n_tokens, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  MatMulArgs args;
  args.type = w.type;
  args.w = static_cast<const uint8_t*>(w.data);
  args.row_bytes = *row_bytes;
  args.n_in = w.n_in;
  args.n_out = w.n_out;
  args.n_tokens = n_tokens;
  args.y = y;
  if (UsesX8(w.type)) {
    // The lane section is filled for kernel tables that read it for every Q8_0/Q4_0 weight, and
    // for weights in the lane layout.
    const bool lanes =
        (kernels_.x8_lanes && (w.type == GgmlType::kQ8_0 || w.type == GgmlType::kQ4_0)) ||
        w.layout == WeightLayout::kCpuLanes;
    const X8Layout layout = MakeX8Layout(w.n_in, X8Group(w.type), lanes ? X8LaneOrder(w.type) : 0);
    uint8_t* x8 = ScratchX8(layout.bytes * static_cast<size_t>(n_tokens));
    const int64_t n_in = w.n_in;
    const size_t x_floats = static_cast<size_t>(n_in * n_tokens);
    // The products of a block that share an input (wq, wk, wv; w_gate, w_up) quantize it once:
    // reuse the previous quantization when the input bytes and the layout are the same.
    const bool same_input = x8_source_valid_ && x8_source_layout_.k == layout.k &&
                            x8_source_layout_.group == layout.group &&
                            x8_source_layout_.lane_order == layout.lane_order &&
                            x8_source_.size() == x_floats &&
                            std::memcmp(x8_source_.data(), x, x_floats * sizeof(float)) == 0;
    if (!same_input) {
      const QuantizeX8Fn quantize = kernels_.quantize_x8;
      auto quantize_tokens = [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) quantize(x + t * n_in, layout, x8 + t * layout.bytes);
      };
      if (n_tokens * n_in >= kParallelElements) {
        pool_.ParallelFor(n_tokens, 1, quantize_tokens);
      } else {
        quantize_tokens(0, n_tokens);
      }
      x8_source_valid_ = x_floats <= kX8SourceFloats;
      if (x8_source_valid_) {
        x8_source_.assign(x, x + x_floats);
        x8_source_layout_ = layout;
      }
    }
    if (profiling_) {
      // The activations' quantization (or the comparison that skips it) is its own line of the
      // profile, so that the matmul lines time the weight kernels alone.
      Record("quantize_x8", GgmlType::kF32, 0, 0, n_tokens, start, 0, 0);
      start = std::chrono::steady_clock::now();
    }
    args.x = x8;
    args.x_stride = layout.bytes;
    args.x8 = layout;
  } else {
    args.x = reinterpret_cast<const uint8_t*>(x);
    args.x_stride = static_cast<size_t>(w.n_in) * sizeof(float);
  }
  const double work =
      static_cast<double>(w.n_in) * static_cast<double>(w.n_out) * static_cast<double>(n_tokens);
  if (work < kParallelMatMulWork || pool_.size() == 1) {
    fn(args, 0, w.n_out);
  } else {
    // Threads take whole panels of weights in the row-panel layout.
    const int64_t grain = w.layout == WeightLayout::kCpuRowPanels ? kPanelRows : kRowGrain;
    pool_.ParallelFor(w.n_out, grain, [&](int64_t r0, int64_t r1) { fn(args, r0, r1); });
  }
  if (profiling_) {
    Record("matmul", w.type, w.n_out, w.n_in, n_tokens, start, 2 * work,
           static_cast<double>(*row_bytes) * static_cast<double>(w.n_out));
  }
}

void CpuBackend::AddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens) {
  for (int64_t t = 0; t < n_tokens; ++t) kernels_.add(y + t * n_out, bias, n_out);
}

// out: [table.n_in, n]
void CpuBackend::GetRows(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  auto row_bytes = RowBytes(table.type, table.n_in);
  if (!row_bytes.ok()) {
    std::fill(out, out + table.n_in * n, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  const auto* rows = static_cast<const uint8_t*>(table.data);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* row = rows + ids[i] * *row_bytes;
    if (table.layout != WeightLayout::kGguf) {
      if (row_scratch_.size() < *row_bytes) row_scratch_.resize(*row_bytes);
      if (table.layout == WeightLayout::kCpuLanes) {
        RowFromLanes(table.type, row, row_scratch_.data(), table.n_in);
      } else {
        RowFromPanels(table.type, rows, table.n_in, table.n_out, ids[i], row_scratch_.data());
      }
      row = row_scratch_.data();
    }
    DequantizeRow(table.type, row, out + i * table.n_in, table.n_in);
  }
}

// Few columns (the tokens that chose one expert) of n_embd each: not worth the thread pool.
void CpuBackend::AddScaledColumns(float* y, const float* x, int64_t rows, const int32_t* ids,
                                  const float* scales, int64_t n) {
  const auto start =
      profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  for (int64_t i = 0; i < n; ++i) {
    float* yc = y + static_cast<int64_t>(ids[i]) * rows;
    const float* xc = x + i * rows;
    const float s = scales[i];
    for (int64_t r = 0; r < rows; ++r) {
      const float product = s * xc[r];
      yc[r] += product;
    }
  }
  if (profiling_) Record("add_scaled_columns", GgmlType::kF32, 0, 0, 1, start, 0, 0);
}

void CpuBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens,
                         float eps, float* y) {
  const auto start =
      profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) kernels_.rms_norm(x + t * n, weight, n, eps, y + t * n);
  };
  if (n * n_tokens >= 2 * kParallelElements) {
    pool_.ParallelFor(n_tokens, 1, run);
  } else {
    run(0, n_tokens);
  }
  if (profiling_) Record("rms_norm", GgmlType::kF32, 0, 0, n_tokens, start, 0, 0);
}

// x: [head_dim * n_heads, T]. As the reference: the angle of pair i at position p is
// p * MakeRopeTable(...).freq[i] in double, so the rotation is bit-identical to it.
void CpuBackend::Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens,
                      const int32_t* positions, const RopeParams& rope) {
  const auto start =
      profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  const int64_t half = head_dim / 2;
  const RopeStyle style = rope.style;
  RopeTable table = MakeRopeTable(rope, head_dim);
  inv_freq_.swap(table.freq);
  const double mscale = table.mscale;
  const size_t per_thread = static_cast<size_t>(2 * half);
  if (rope_cs_.size() < per_thread * pool_.size()) rope_cs_.resize(per_thread * pool_.size());
  auto run = [&](int thread, int64_t t0, int64_t t1) {
    double* cs = rope_cs_.data() + per_thread * thread;
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const double theta = positions[t] * inv_freq_[i];
        cs[2 * i] = std::cos(theta) * mscale;
        cs[2 * i + 1] = std::sin(theta) * mscale;
      }
      for (int64_t h = 0; h < n_heads; ++h) {
        float* head = x + t * head_dim * n_heads + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          float& a = style == RopeStyle::kNeox ? head[i] : head[2 * i];
          float& b = style == RopeStyle::kNeox ? head[i + half] : head[2 * i + 1];
          const double a0 = a;
          const double b0 = b;
          a = static_cast<float>(a0 * cs[2 * i] - b0 * cs[2 * i + 1]);
          b = static_cast<float>(a0 * cs[2 * i + 1] + b0 * cs[2 * i]);
        }
      }
    }
  };
  const int threads = pool_.size();
  if (n_tokens >= 2 * threads && n_tokens * head_dim * n_heads >= kParallelElements) {
    pool_.Run([&](int i) { run(i, n_tokens * i / threads, n_tokens * (i + 1) / threads); });
  } else {
    run(0, 0, n_tokens);
  }
  if (profiling_) Record("rope", GgmlType::kF32, 0, 0, n_tokens, start, 0, 0);
}

void CpuBackend::SwiGlu(const float* gate, const float* up, int64_t n, float* y) {
  const auto start =
      profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  if (n >= 2 * kParallelElements) {
    pool_.ParallelFor(n, 64, [&](int64_t i0, int64_t i1) {
      kernels_.swiglu(gate + i0, up + i0, i1 - i0, y + i0);
    });
  } else {
    kernels_.swiglu(gate, up, n, y);
  }
  if (profiling_) Record("swiglu", GgmlType::kF32, 0, 0, 1, start, 0, 0);
}

void CpuBackend::Add(float* y, const float* x, int64_t n) {
  const auto start =
      profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  if (n >= 4 * kParallelElements) {
    pool_.ParallelFor(n, 64,
                      [&](int64_t i0, int64_t i1) { kernels_.add(y + i0, x + i0, i1 - i0); });
  } else {
    kernels_.add(y, x, n);
  }
  if (profiling_) Record("add", GgmlType::kF32, 0, 0, 1, start, 0, 0);
}

// k, v: [kv_dim, T] -> row positions[t] of k_cache, v_cache: [kv_dim, capacity], rounded as the
// reference does (QuantizeRow: a copy for f32).
void CpuBackend::StoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                         const int32_t* positions, KvTypes types, void* k_cache, void* v_cache) {
  const size_t k_row = KvRowBytes(types.k, kv_dim), v_row = KvRowBytes(types.v, kv_dim);
  for (int64_t t = 0; t < n_tokens; ++t) {
    QuantizeRow(types.k, k + t * kv_dim, static_cast<uint8_t*>(k_cache) + positions[t] * k_row,
                kv_dim);
    QuantizeRow(types.v, v + t * kv_dim, static_cast<uint8_t*>(v_cache) + positions[t] * v_row,
                kv_dim);
  }
}

// q, out: [head_dim * n_head, T]; caches: [head_dim * n_head_kv, capacity]
void CpuBackend::Attention(const float* q, const void* k_cache, const void* v_cache,
                           const AttentionShape& shape, int64_t n_tokens, const int32_t* positions,
                           float* out) {
  const auto start =
      profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  AttentionArgs args;
  args.q = q;
  args.k_cache = k_cache;
  args.v_cache = v_cache;
  args.shape = shape;
  args.positions = positions;
  args.out = out;
  args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.head_dim)));
  int64_t visible = 0, longest = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    visible += positions[t] + 1;
    longest = std::max<int64_t>(longest, positions[t] + 1);
  }
  // The score table holds the longest row; the scratch grows with the context and stays.
  args.score_chunks = AttentionScoreChunks(longest);
  const size_t per_thread =
      AlignUp64(static_cast<size_t>(AttentionScratchFloats(shape, args.score_chunks)) *
                sizeof(float)) /
      sizeof(float);
  float* scratch = ScratchAttention(per_thread);
  const int64_t tasks = n_tokens * shape.n_head_kv;
  const double work = static_cast<double>(visible) * static_cast<double>(shape.n_head) *
                      static_cast<double>(shape.head_dim);
  const int threads = pool_.size();
  if (work < kParallelMatMulWork || threads == 1 || tasks == 1) {
    kernels_.attention(args, 0, tasks, scratch);
  } else {
    pool_.Run([&](int i) {
      float* mine = scratch + per_thread * i;
      if (n_tokens >= threads) {
        // A prompt: token t goes to thread t % threads, so early (short) and late (long) rows
        // are shared evenly.
        for (int64_t t = i; t < n_tokens; t += threads) {
          kernels_.attention(args, t * shape.n_head_kv, (t + 1) * shape.n_head_kv, mine);
        }
      } else {
        // Decode: split the (token, KV head) tasks.
        const int64_t b = tasks * i / threads, e = tasks * (i + 1) / threads;
        if (b < e) kernels_.attention(args, b, e, mine);
      }
    });
  }
  if (profiling_) Record("attention", GgmlType::kF32, 0, 0, n_tokens, start, 0, 0);
}

}  // namespace swarm::kernels::cpu
