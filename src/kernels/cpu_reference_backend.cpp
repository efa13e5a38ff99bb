#include "kernels/cpu_reference_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "absl/strings/str_cat.h"
#include "base/half.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels {
namespace {

constexpr std::align_val_t kAlignment{64};

class HostBuffer : public Buffer {
 public:
  HostBuffer(void* data, size_t size) : data_(data), size_(size) {}
  ~HostBuffer() override { ::operator delete(data_, kAlignment); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_;
  size_t size_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Buffer>> CpuReferenceBackend::Allocate(size_t bytes) {
  // A zero-byte buffer still gets a unique, valid pointer.
  void* data = ::operator new(std::max<size_t>(bytes, 1), kAlignment, std::nothrow);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
  }
  return std::make_unique<HostBuffer>(data, bytes);
}

absl::StatusOr<Weight> CpuReferenceBackend::PrepareWeight(
    const Weight& host, std::vector<std::unique_ptr<Buffer>>& /*storage*/) {
  auto row_bytes = RowBytes(host.type, host.n_in);
  if (!row_bytes.ok()) return row_bytes.status();
  return host;
}

absl::Status CpuReferenceBackend::CopyToBackend(void* dst, const void* host_src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, host_src, bytes);
  return absl::OkStatus();
}

absl::Status CpuReferenceBackend::CopyToHost(void* host_dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(host_dst, src, bytes);
  return absl::OkStatus();
}

// y: [n_out, T], x: [n_in, T]
void CpuReferenceBackend::MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  auto row_bytes = RowBytes(w.type, w.n_in);
  if (!row_bytes.ok()) {
    // Unreachable for weights that went through PrepareWeight; make the misuse visible.
    std::fill(y, y + w.n_out * n_tokens, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  const auto* rows = static_cast<const uint8_t*>(w.data);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < w.n_out; ++r) {
      y[t * w.n_out + r] = DotRowReference(w.type, rows + r * *row_bytes, x + t * w.n_in, w.n_in);
    }
  }
}

void CpuReferenceBackend::AddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < n_out; ++r) y[t * n_out + r] += bias[r];
  }
}

// out: [table.n_in, n]
void CpuReferenceBackend::GetRows(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  auto row_bytes = RowBytes(table.type, table.n_in);
  if (!row_bytes.ok()) {
    std::fill(out, out + table.n_in * n, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  const auto* rows = static_cast<const uint8_t*>(table.data);
  for (int64_t i = 0; i < n; ++i) {
    DequantizeRow(table.type, rows + ids[i] * *row_bytes, out + i * table.n_in, table.n_in);
  }
}

// As ggml_rms_norm followed by ggml_mul: the mean of squares in double, the scale in float.
void CpuReferenceBackend::AddScaledColumns(float* y, const float* x, int64_t rows,
                                           const int32_t* ids, const float* scales, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float* yc = y + static_cast<int64_t>(ids[i]) * rows;
    const float* xc = x + i * rows;
    for (int64_t r = 0; r < rows; ++r) {
      const float product = scales[i] * xc[r];
      yc[r] += product;
    }
  }
}

void CpuReferenceBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens,
                                  float eps, float* y) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * n;
    float* yt = y + t * n;
    double sum_squares = 0.0;
    for (int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(xt[i]) * xt[i];
    const float mean = static_cast<float>(sum_squares / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) yt[i] = (xt[i] * scale) * weight[i];
  }
}

// x: [head_dim * n_heads, T]. Pair i of a head (i < head_dim/2) turns by the angle
// positions[t] * table.freq[i]; cos and sin are scaled by table.mscale.
void CpuReferenceBackend::Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens,
                               const int32_t* positions, const RopeParams& rope) {
  const int64_t half = head_dim / 2;
  const RopeTable table = MakeRopeTable(rope, head_dim);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + t * head_dim * n_heads + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double theta = positions[t] * table.freq[i];
        const double c = std::cos(theta) * table.mscale;
        const double s = std::sin(theta) * table.mscale;
        float& a = rope.style == RopeStyle::kNeox ? head[i] : head[2 * i];
        float& b = rope.style == RopeStyle::kNeox ? head[i + half] : head[2 * i + 1];
        const double a0 = a;
        const double b0 = b;
        a = static_cast<float>(a0 * c - b0 * s);
        b = static_cast<float>(a0 * s + b0 * c);
      }
    }
  }
}

void CpuReferenceBackend::SwiGlu(const float* gate, const float* up, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    y[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void CpuReferenceBackend::Add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

// k, v: [kv_dim, T] -> row positions[t] of k_cache, v_cache: [kv_dim, capacity], rounded to the
// cache types as llama.cpp's copy into its cache (f16: nearest even; q8_0: quantize_row_q8_0_ref).
void CpuReferenceBackend::StoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                                  const int32_t* positions, KvTypes types, void* k_cache,
                                  void* v_cache) {
  const size_t k_row = KvRowBytes(types.k, kv_dim), v_row = KvRowBytes(types.v, kv_dim);
  for (int64_t t = 0; t < n_tokens; ++t) {
    QuantizeRow(types.k, k + t * kv_dim, static_cast<uint8_t*>(k_cache) + positions[t] * k_row,
                kv_dim);
    QuantizeRow(types.v, v + t * kv_dim, static_cast<uint8_t*>(v_cache) + positions[t] * v_row,
                kv_dim);
  }
}

namespace {

// Rounds one head of q as ggml's mul_mat rounds its second operand to the K cache's vec_dot_type
// (f16 for an f16 cache, q8_0 for a q8_0 cache, nothing for f32).
void RoundQueryForKeys(GgmlType k_type, const float* q, int64_t head_dim, float* rounded,
                       std::vector<uint8_t>& tmp) {
  if (k_type == GgmlType::kF32) {
    std::copy(q, q + head_dim, rounded);
    return;
  }
  tmp.resize(KvRowBytes(k_type, head_dim));
  QuantizeRow(k_type, q, tmp.data(), head_dim);
  DequantizeRow(k_type, tmp.data(), rounded, head_dim);
}

}  // namespace

// q, out: [head_dim * n_head, T]; caches: [head_dim * n_head_kv, capacity] of shape.cache's types.
// Rounding as llama.cpp's default CPU attention (kernels/kv_types.h); the arithmetic in between is
// double.
void CpuReferenceBackend::Attention(const float* q, const void* k_cache, const void* v_cache,
                                    const AttentionShape& shape, int64_t n_tokens,
                                    const int32_t* positions, float* out) {
  const int64_t head_dim = shape.head_dim;
  const int64_t q_stride = head_dim * shape.n_head;
  const int64_t kv_dim = head_dim * shape.n_head_kv;
  const int64_t group = shape.n_head / shape.n_head_kv;  // query heads per KV head
  const KvTypes types = shape.cache;
  const size_t k_row = KvRowBytes(types.k, kv_dim), v_row = KvRowBytes(types.v, kv_dim);
  const bool round_probabilities = types.v == GgmlType::kF16;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const auto* k_bytes = static_cast<const uint8_t*>(k_cache);
  const auto* v_bytes = static_cast<const uint8_t*>(v_cache);
  std::vector<double> scores;
  std::vector<double> acc(static_cast<size_t>(head_dim));
  std::vector<float> qh(static_cast<size_t>(head_dim)), row(static_cast<size_t>(head_dim));
  std::vector<uint8_t> tmp;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t n_visible = int64_t{positions[t]} + 1;
    scores.resize(static_cast<size_t>(n_visible));
    for (int64_t h = 0; h < shape.n_head; ++h) {
      RoundQueryForKeys(types.k, q + t * q_stride + h * head_dim, head_dim, qh.data(), tmp);
      const int64_t kv_head = h / group;
      const size_t k_head = KvRowBytes(types.k, kv_head * head_dim);
      const size_t v_head = KvRowBytes(types.v, kv_head * head_dim);

      double max_score = -std::numeric_limits<double>::infinity();
      for (int64_t p = 0; p < n_visible; ++p) {
        DequantizeRow(types.k, k_bytes + p * k_row + k_head, row.data(), head_dim);
        double dot = 0.0;
        for (int64_t i = 0; i < head_dim; ++i) dot += static_cast<double>(qh[i]) * row[i];
        scores[p] = dot * scale;
        max_score = std::max(max_score, scores[p]);
      }
      double denominator = 0.0;
      for (int64_t p = 0; p < n_visible; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        denominator += scores[p];
      }

      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t p = 0; p < n_visible; ++p) {
        DequantizeRow(types.v, v_bytes + p * v_row + v_head, row.data(), head_dim);
        double weight = scores[p] / denominator;
        // llama.cpp's softmax output is a float tensor that mul_mat converts to f16.
        if (round_probabilities) weight = HalfToFloat(FloatToHalf(static_cast<float>(weight)));
        for (int64_t i = 0; i < head_dim; ++i) acc[i] += weight * row[i];
      }
      float* oh = out + t * q_stride + h * head_dim;
      for (int64_t i = 0; i < head_dim; ++i) oh[i] = static_cast<float>(acc[i]);
    }
  }
}

std::unique_ptr<Backend> MakeCpuReferenceBackend() {
  return std::make_unique<CpuReferenceBackend>();
}

}  // namespace swarm::kernels
