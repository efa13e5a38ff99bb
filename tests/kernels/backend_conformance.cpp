#include "backend_conformance.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "kernels/cpu_reference_backend.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::testing {

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kMatMul:
      return "MatMul";
    case Op::kAddBias:
      return "AddBias";
    case Op::kGetRows:
      return "GetRows";
    case Op::kRmsNorm:
      return "RmsNorm";
    case Op::kRope:
      return "Rope";
    case Op::kSwiGlu:
      return "SwiGlu";
    case Op::kAdd:
      return "Add";
    case Op::kStoreKv:
      return "StoreKv";
    case Op::kAttention:
      return "Attention";
    case Op::kAddScaledColumns:
      return "AddScaledColumns";
  }
  return "unknown";
}

double DefaultNmseBound(Op op, GgmlType weight_type) {
  switch (op) {
    case Op::kMatMul:
      switch (weight_type) {
        case GgmlType::kF32:
          return 1e-6;  // float accumulation, or TF32-like device math
        case GgmlType::kF16:
          return 1e-5;  // activations rounded to f16
        case GgmlType::kBF16:
          return 5e-5;  // activations rounded to bf16
        default:
          return 5e-4;  // activations quantized to Q8_0 / Q8_K
      }
    case Op::kGetRows:
      return 1e-12;  // dequantization; allows a fused multiply-add in d * q - m
    case Op::kAddBias:
    case Op::kAdd:
    case Op::kAddScaledColumns:  // one rounded product, one rounded sum
    case Op::kStoreKv:
      return 0.0;
    case Op::kRmsNorm:
    case Op::kSwiGlu:
      return 1e-9;
    case Op::kRope:
      return 1e-6;  // float angles at large positions drift by ~1e-4 rad
    case Op::kAttention:
      // weight_type is the V cache's type. The kernels round where the reference does
      // (kernels/kv_types.h): what is left is float against double arithmetic and, with an f16 V
      // cache, now and then a probability whose float value lies on the other side of an f16
      // rounding boundary than its exact value: one f16 step on that weight, which in a row of two
      // or three positions weighs up to a half (about 1e-7).
      return weight_type == GgmlType::kF16 ? 2e-7 : 1e-9;
  }
  return 0.0;
}

int ConformanceReport::failures() const {
  return static_cast<int>(
      std::count_if(cases.begin(), cases.end(), [](const CaseResult& c) { return !c.passed; }));
}

::testing::AssertionResult ConformanceReport::Ok() const {
  if (failures() == 0) return ::testing::AssertionSuccess();
  auto result = ::testing::AssertionFailure();
  result << failures() << " of " << cases.size() << " cases failed";
  int listed = 0;
  for (const CaseResult& c : cases) {
    if (c.passed) continue;
    if (++listed > 10) {
      result << "\n  ...";
      break;
    }
    result << absl::StrCat("\n  ", c.op, " [", c.description, "]: NMSE ", c.nmse, " > bound ",
                           c.bound, c.details);
  }
  return result;
}

namespace {

// Unscaled RoPE with this base and pairing.
RopeParams Plain(float freq_base, RopeStyle style) {
  RopeParams rope;
  rope.freq_base = freq_base;
  rope.style = style;
  return rope;
}

// ---- running one case on one backend -------------------------------------------------------

// Backend memory for one run of a case: inputs uploaded, outputs downloaded after Synchronize.
class DeviceMemory {
 public:
  explicit DeviceMemory(Backend& backend) : backend_(backend) {}

  absl::StatusOr<float*> Upload(const std::vector<float>& host) {
    SWARM_ASSIGN_OR_RETURN(void* dev, UploadBytes(host.data(), host.size() * sizeof(float)));
    return static_cast<float*>(dev);
  }

  absl::StatusOr<void*> UploadBytes(const void* host, size_t bytes) {
    SWARM_ASSIGN_OR_RETURN(std::unique_ptr<Buffer> buffer, backend_.Allocate(bytes));
    if (buffer->size() < bytes) return absl::InternalError("Allocate returned a short buffer");
    SWARM_RETURN_IF_ERROR(backend_.CopyToBackend(buffer->data(), host, bytes));
    void* data = buffer->data();
    buffers_.push_back(std::move(buffer));
    return data;
  }

  // Output buffers start as NaN so that elements an operation fails to write show up.
  absl::StatusOr<float*> Output(size_t n) {
    return Upload(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()));
  }

  absl::StatusOr<Weight> Prepare(const Weight& host) {
    return backend_.PrepareWeight(host, buffers_);
  }

  absl::StatusOr<std::vector<float>> Download(const float* dev, size_t n) {
    std::vector<float> host(n);
    SWARM_RETURN_IF_ERROR(backend_.CopyToHost(host.data(), dev, n * sizeof(float)));
    // A device backend fills `host` by the next Synchronize(), not before.
    SWARM_RETURN_IF_ERROR(backend_.Synchronize());
    return host;
  }

 private:
  Backend& backend_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

struct Case {
  std::string description;
  GgmlType type = GgmlType::kF32;  // selects the bound for MatMul and GetRows
  // Runs the operation on a backend and returns its output(s), concatenated.
  std::function<absl::StatusOr<std::vector<float>>(Backend&)> run;
};

class Random {
 public:
  explicit Random(uint64_t seed) : rng_(seed) {}
  std::vector<float> Normal(size_t n, float sigma = 1.0f) {
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng_);
    return v;
  }

 private:
  std::mt19937_64 rng_;
};

// A host weight matrix [n_in, n_out] of `type`, quantized from random values by the reference.
struct HostWeight {
  std::vector<uint8_t> bytes;
  Weight weight;
};

std::shared_ptr<HostWeight> MakeHostWeight(Random& rng, GgmlType type, int64_t n_in,
                                           int64_t n_out) {
  auto w = std::make_shared<HostWeight>();
  const size_t row_bytes = RowBytes(type, n_in).value();
  w->bytes.resize(row_bytes * static_cast<size_t>(n_out));
  const std::vector<float> values = rng.Normal(static_cast<size_t>(n_in * n_out), 0.5f);
  for (int64_t r = 0; r < n_out; ++r) {
    QuantizeRow(type, values.data() + r * n_in, w->bytes.data() + r * row_bytes, n_in);
  }
  w->weight = Weight{type, n_in, n_out, w->bytes.data()};
  return w;
}

std::vector<int64_t> RowLengthsFor(GgmlType type, bool large) {
  const int64_t block = GetTypeTraits(type).value().block_size;
  std::vector<int64_t> lengths;
  if (block == 1) {
    lengths = {1, 3, 33, 64};
  } else if (block == 32) {
    lengths = {32, 96};
  } else {
    lengths = {256, 512};
  }
  if (large) lengths.push_back(2048);
  return lengths;
}

std::vector<int32_t> Positions(int64_t start, int64_t n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), static_cast<int32_t>(start));
  return p;
}

std::string PositionsText(const std::vector<int32_t>& positions) {
  std::string s = "pos=";
  for (size_t i = 0; i < positions.size() && i < 4; ++i) {
    absl::StrAppend(&s, i ? "," : "", positions[i]);
  }
  if (positions.size() > 4) absl::StrAppend(&s, ",...");
  return s;
}

// ---- the cases of each operation -----------------------------------------------------------

std::vector<Case> MatMulCases(Random& rng, bool large) {
  std::vector<Case> cases;
  for (GgmlType type : kConformanceWeightTypes) {
    for (int64_t n_in : RowLengthsFor(type, large)) {
      // At least 32 outputs per case: the NMSE of a single output can be large by chance
      // when its value happens to be near zero.
      const std::pair<int64_t, int64_t> outs_tokens[] = {{1, 32}, {5, 8}, {17, 5}};
      for (const auto& shape : outs_tokens) {
        // Model-sized rows get more outputs and tokens.
        const int64_t n_out = n_in >= 2048 ? 64 : shape.first;
        const int64_t n_tokens = n_in >= 2048 && shape.second == 5 ? 7 : shape.second;
        auto w = MakeHostWeight(rng, type, n_in, n_out);
        auto x =
            std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n_in * n_tokens)));
        cases.push_back(
            {absl::StrCat(ToAbsl(GgmlTypeName(type)), " n_in=", n_in, " n_out=", n_out,
                          " T=", n_tokens),
             type, [w, x, n_out, n_tokens](Backend& b) -> absl::StatusOr<std::vector<float>> {
               DeviceMemory mem(b);
               SWARM_ASSIGN_OR_RETURN(Weight dw, mem.Prepare(w->weight));
               SWARM_ASSIGN_OR_RETURN(float* dx, mem.Upload(*x));
               SWARM_ASSIGN_OR_RETURN(float* dy, mem.Output(static_cast<size_t>(n_out * n_tokens)));
               b.MatMul(dw, dx, n_tokens, dy);
               return mem.Download(dy, static_cast<size_t>(n_out * n_tokens));
             }});
      }
    }
  }
  return cases;
}

std::vector<Case> AddBiasCases(Random& rng, bool large) {
  std::vector<Case> cases;
  std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {7, 3}, {64, 2}};
  if (large) shapes.push_back({4096, 8});
  for (const auto& shape : shapes) {
    const int64_t n_out = shape.first;
    const int64_t n_tokens = shape.second;
    auto y =
        std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n_out * n_tokens)));
    auto bias = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n_out)));
    cases.push_back({absl::StrCat("n_out=", n_out, " T=", n_tokens), GgmlType::kF32,
                     [y, bias, n_out, n_tokens](Backend& b) -> absl::StatusOr<std::vector<float>> {
                       DeviceMemory mem(b);
                       SWARM_ASSIGN_OR_RETURN(float* dy, mem.Upload(*y));
                       SWARM_ASSIGN_OR_RETURN(float* dbias, mem.Upload(*bias));
                       b.AddBias(dy, dbias, n_out, n_tokens);
                       return mem.Download(dy, y->size());
                     }});
  }
  return cases;
}

std::vector<Case> GetRowsCases(Random& rng, bool large) {
  std::vector<Case> cases;
  const std::vector<int32_t> id_sets[] = {{5, 0, 5, 2}, {3}};
  for (GgmlType type : kConformanceWeightTypes) {
    for (int64_t n_in : RowLengthsFor(type, large)) {
      auto table = MakeHostWeight(rng, type, n_in, 6);
      for (const std::vector<int32_t>& ids : id_sets) {
        const int64_t n = static_cast<int64_t>(ids.size());
        cases.push_back(
            {absl::StrCat(ToAbsl(GgmlTypeName(type)), " n_in=", n_in, " rows=6 ids=", n), type,
             [table, ids, n, n_in](Backend& b) -> absl::StatusOr<std::vector<float>> {
               DeviceMemory mem(b);
               SWARM_ASSIGN_OR_RETURN(Weight dt, mem.Prepare(table->weight));
               SWARM_ASSIGN_OR_RETURN(float* out, mem.Output(static_cast<size_t>(n_in * n)));
               b.GetRows(dt, ids.data(), n, out);
               return mem.Download(out, static_cast<size_t>(n_in * n));
             }});
      }
    }
  }
  return cases;
}

std::vector<Case> RmsNormCases(Random& rng, bool large) {
  std::vector<Case> cases;
  std::vector<int64_t> lengths = {1, 3, 33, 64, 1000};
  if (large) lengths.push_back(4096);
  for (int64_t n : lengths) {
    for (int64_t n_tokens : {1, 3}) {
      for (bool in_place : {false, true}) {
        const float eps = n_tokens == 1 ? 1e-5f : 1e-6f;
        auto x = std::make_shared<std::vector<float>>(
            rng.Normal(static_cast<size_t>(n * n_tokens), n == 3 ? 0.01f : 2.0f));
        auto weight = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n)));
        cases.push_back(
            {absl::StrCat("n=", n, " T=", n_tokens, " eps=", eps, in_place ? " in-place" : ""),
             GgmlType::kF32,
             [x, weight, n, n_tokens, eps,
              in_place](Backend& b) -> absl::StatusOr<std::vector<float>> {
               DeviceMemory mem(b);
               SWARM_ASSIGN_OR_RETURN(float* dx, mem.Upload(*x));
               SWARM_ASSIGN_OR_RETURN(float* dw, mem.Upload(*weight));
               float* dy = dx;
               if (!in_place) {
                 SWARM_ASSIGN_OR_RETURN(dy, mem.Output(x->size()));
               }
               b.RmsNorm(dx, dw, n, n_tokens, eps, dy);
               return mem.Download(dy, x->size());
             }});
      }
    }
  }
  return cases;
}

std::vector<Case> RopeCases(Random& rng, bool large) {
  std::vector<Case> cases;
  struct Layout {
    int64_t n_heads;
    std::vector<int32_t> positions;
    float freq_base;
  };
  std::vector<Layout> layouts = {{1, {0}, 10000.0f},
                                 {3, Positions(7, 4), 10000.0f},
                                 {2, Positions(1000, 3), 1e6f},
                                 {2, {9, 2, 4}, 10000.0f}};  // not contiguous
  if (large) layouts.push_back({8, Positions(4000, 16), 500000.0f});
  std::vector<int64_t> head_dims = {2, 4, 8, 64, 128};
  // Plain RoPE; Llama 3-style frequency factors with linear scaling; YaRN (with factors).
  struct Scaling {
    const char* name;
    float freq_scale, ext_factor, attn_factor;
    int64_t n_ctx_orig;
    bool factors;
  };
  const Scaling scalings[] = {{"plain", 1.0f, 0.0f, 1.0f, 0, false},
                              {"factors+linear/4", 0.25f, 0.0f, 1.0f, 0, true},
                              {"yarn/8", 0.125f, 1.0f, 1.0f, 256, true}};
  for (int64_t head_dim : head_dims) {
    for (const Scaling& scaling : scalings) {
      // The scaled variants on two head sizes suffice: the table is per pair, whatever the size.
      if (scaling.freq_scale != 1.0f && head_dim != 8 && head_dim != 128) continue;
      for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kNeox}) {
        for (const Layout& layout : layouts) {
          const int64_t n_tokens = static_cast<int64_t>(layout.positions.size());
          auto x = std::make_shared<std::vector<float>>(
              rng.Normal(static_cast<size_t>(head_dim * layout.n_heads * n_tokens)));
          const int64_t n_heads = layout.n_heads;
          const std::vector<int32_t> positions = layout.positions;
          RopeParams rope = Plain(layout.freq_base, style);
          rope.freq_scale = scaling.freq_scale;
          rope.ext_factor = scaling.ext_factor;
          rope.attn_factor = scaling.attn_factor;
          rope.n_ctx_orig = scaling.n_ctx_orig;
          if (scaling.factors) {
            for (int64_t i = 0; i < head_dim / 2; ++i) {
              rope.freq_factors.push_back(i < head_dim / 4 ? 1.0f : 1.0f + 0.5f * i);
            }
          }
          cases.push_back(
              {absl::StrCat(style == RopeStyle::kNeox ? "neox" : "adjacent", " head_dim=", head_dim,
                            " heads=", n_heads, " T=", n_tokens, " ", PositionsText(positions),
                            " base=", layout.freq_base, " ", scaling.name),
               GgmlType::kF32,
               [x, head_dim, n_heads, n_tokens, positions,
                rope](Backend& b) -> absl::StatusOr<std::vector<float>> {
                 DeviceMemory mem(b);
                 SWARM_ASSIGN_OR_RETURN(float* dx, mem.Upload(*x));
                 b.Rope(dx, head_dim, n_heads, n_tokens, positions.data(), rope);
                 return mem.Download(dx, x->size());
               }});
        }
      }
    }
  }
  return cases;
}

std::vector<Case> SwiGluCases(Random& rng, bool large) {
  std::vector<Case> cases;
  std::vector<int64_t> lengths = {1, 3, 33, 1000};
  if (large) lengths.push_back(5632 * 4);
  for (int64_t n : lengths) {
    for (bool in_place : {false, true}) {
      auto gate = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n), 4.0f));
      auto up = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n)));
      cases.push_back({absl::StrCat("n=", n, in_place ? " in-place" : ""), GgmlType::kF32,
                       [gate, up, n, in_place](Backend& b) -> absl::StatusOr<std::vector<float>> {
                         DeviceMemory mem(b);
                         SWARM_ASSIGN_OR_RETURN(float* dg, mem.Upload(*gate));
                         SWARM_ASSIGN_OR_RETURN(float* du, mem.Upload(*up));
                         float* dy = dg;
                         if (!in_place) {
                           SWARM_ASSIGN_OR_RETURN(dy, mem.Output(gate->size()));
                         }
                         b.SwiGlu(dg, du, n, dy);
                         return mem.Download(dy, gate->size());
                       }});
    }
  }
  return cases;
}

std::vector<Case> AddCases(Random& rng, bool large) {
  std::vector<Case> cases;
  std::vector<int64_t> lengths = {1, 3, 33, 1000};
  if (large) lengths.push_back(2048 * 16);
  for (int64_t n : lengths) {
    auto y = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n)));
    auto x = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(n)));
    cases.push_back({absl::StrCat("n=", n), GgmlType::kF32,
                     [y, x, n](Backend& b) -> absl::StatusOr<std::vector<float>> {
                       DeviceMemory mem(b);
                       SWARM_ASSIGN_OR_RETURN(float* dy, mem.Upload(*y));
                       SWARM_ASSIGN_OR_RETURN(float* dx, mem.Upload(*x));
                       b.Add(dy, dx, n);
                       return mem.Download(dy, y->size());
                     }});
  }
  return cases;
}

// One expert's outputs x: [rows, n] added, scaled, to n of the T columns of y: [rows, T] (the
// columns in no particular order, as the tokens that chose the expert).
std::vector<Case> AddScaledColumnsCases(Random& rng, bool large) {
  std::vector<Case> cases;
  struct Shape {
    int64_t rows, n_columns, n;
  };
  std::vector<Shape> shapes = {{1, 1, 1}, {64, 5, 2}, {33, 7, 7}, {256, 16, 9}};
  if (large) shapes.push_back({4096, 64, 40});
  for (const Shape& s : shapes) {
    auto y =
        std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(s.rows * s.n_columns)));
    auto x = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(s.rows * s.n)));
    auto scales = std::make_shared<std::vector<float>>(rng.Normal(static_cast<size_t>(s.n)));
    // Distinct columns, every other one from the end, so that they are not in order.
    auto ids = std::make_shared<std::vector<int32_t>>();
    for (int64_t i = 0; i < s.n; ++i) {
      ids->push_back(static_cast<int32_t>(i % 2 == 0 ? s.n_columns - 1 - i / 2 : i / 2));
    }
    cases.push_back({absl::StrCat("rows=", s.rows, " columns=", s.n_columns, " n=", s.n),
                     GgmlType::kF32,
                     [y, x, scales, ids, s](Backend& b) -> absl::StatusOr<std::vector<float>> {
                       DeviceMemory mem(b);
                       SWARM_ASSIGN_OR_RETURN(float* dy, mem.Upload(*y));
                       SWARM_ASSIGN_OR_RETURN(float* dx, mem.Upload(*x));
                       b.AddScaledColumns(dy, dx, s.rows, ids->data(), scales->data(), s.n);
                       return mem.Download(dy, y->size());
                     }});
  }
  return cases;
}

// Host bytes of `rows` cache rows of kv_dim values of `type`, from floats.
std::vector<uint8_t> ToCacheBytes(GgmlType type, const std::vector<float>& values, int64_t kv_dim) {
  const size_t row = KvRowBytes(type, kv_dim);
  const size_t rows = values.size() / static_cast<size_t>(kv_dim);
  std::vector<uint8_t> bytes(row * rows);
  for (size_t r = 0; r < rows; ++r) {
    QuantizeRow(type, values.data() + r * kv_dim, bytes.data() + r * row, kv_dim);
  }
  return bytes;
}

// A cache of `type` in backend memory, read back as floats.
absl::StatusOr<std::vector<float>> DownloadCache(Backend& b, const void* dev, GgmlType type,
                                                 int64_t kv_dim, int64_t rows) {
  const size_t row = KvRowBytes(type, kv_dim);
  std::vector<uint8_t> bytes(row * static_cast<size_t>(rows));
  SWARM_RETURN_IF_ERROR(b.CopyToHost(bytes.data(), dev, bytes.size()));
  SWARM_RETURN_IF_ERROR(b.Synchronize());
  std::vector<float> out(static_cast<size_t>(kv_dim * rows));
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(type, bytes.data() + r * row, out.data() + r * kv_dim, kv_dim);
  }
  return out;
}

// Cache types checked for StoreKv and Attention: keys and values alike, and one mixed pair.
constexpr KvTypes kConformanceKvTypes[] = {{GgmlType::kF32, GgmlType::kF32},
                                           {GgmlType::kF16, GgmlType::kF16},
                                           {GgmlType::kQ8_0, GgmlType::kQ8_0},
                                           {GgmlType::kQ8_0, GgmlType::kF16},
                                           {GgmlType::kF16, GgmlType::kF32}};

std::vector<Case> StoreKvCases(Random& rng, bool large) {
  std::vector<Case> cases;
  constexpr int64_t kCapacity = 12;
  const std::vector<int32_t> position_sets[] = {{0}, Positions(5, 3), {9, 2, 4}, {11}};
  for (const KvTypes types : kConformanceKvTypes) {
    const bool q8 = types.k == GgmlType::kQ8_0 || types.v == GgmlType::kQ8_0;
    std::vector<int64_t> kv_dims =
        q8 ? std::vector<int64_t>{32, 96} : std::vector<int64_t>{1, 8, 33};
    if (large) kv_dims.push_back(512);
    for (int64_t kv_dim : kv_dims) {
      for (const std::vector<int32_t>& positions : position_sets) {
        const int64_t n_tokens = static_cast<int64_t>(positions.size());
        const size_t cache_size = static_cast<size_t>(kv_dim * kCapacity);
        auto k = std::make_shared<std::vector<float>>(
            rng.Normal(static_cast<size_t>(kv_dim * n_tokens)));
        auto v = std::make_shared<std::vector<float>>(
            rng.Normal(static_cast<size_t>(kv_dim * n_tokens)));
        // Earlier contents of the caches must survive outside the written rows.
        auto k_cache = std::make_shared<std::vector<uint8_t>>(
            ToCacheBytes(types.k, rng.Normal(cache_size), kv_dim));
        auto v_cache = std::make_shared<std::vector<uint8_t>>(
            ToCacheBytes(types.v, rng.Normal(cache_size), kv_dim));
        cases.push_back(
            {absl::StrCat("cache=", KvTypesText(types), " kv_dim=", kv_dim, " T=", n_tokens,
                          " capacity=", kCapacity, " ", PositionsText(positions)),
             types.k,
             [k, v, k_cache, v_cache, kv_dim, n_tokens, positions,
              types](Backend& b) -> absl::StatusOr<std::vector<float>> {
               DeviceMemory mem(b);
               SWARM_ASSIGN_OR_RETURN(float* dk, mem.Upload(*k));
               SWARM_ASSIGN_OR_RETURN(float* dv, mem.Upload(*v));
               SWARM_ASSIGN_OR_RETURN(void* dkc, mem.UploadBytes(k_cache->data(), k_cache->size()));
               SWARM_ASSIGN_OR_RETURN(void* dvc, mem.UploadBytes(v_cache->data(), v_cache->size()));
               b.StoreKv(dk, dv, kv_dim, n_tokens, positions.data(), types, dkc, dvc);
               SWARM_ASSIGN_OR_RETURN(std::vector<float> out,
                                      DownloadCache(b, dkc, types.k, kv_dim, kCapacity));
               SWARM_ASSIGN_OR_RETURN(std::vector<float> vout,
                                      DownloadCache(b, dvc, types.v, kv_dim, kCapacity));
               out.insert(out.end(), vout.begin(), vout.end());
               return out;
             }});
      }
    }
  }
  return cases;
}

std::vector<Case> AttentionCases(Random& rng, bool large) {
  std::vector<Case> cases;
  struct Batch {
    std::vector<int32_t> positions;
    int64_t capacity;
  };
  std::vector<Batch> batches = {{{0}, 4}, {Positions(0, 3), 4}, {{9}, 16}, {Positions(5, 4), 16}};
  if (large) {
    batches.push_back({Positions(0, 32), 512});
    batches.push_back({{511}, 512});
  }
  for (const KvTypes types : kConformanceKvTypes) {
    std::vector<AttentionShape> shapes;
    if (types.k == GgmlType::kQ8_0 || types.v == GgmlType::kQ8_0) {
      shapes = {{1, 1, 32}, {4, 2, 32}, {4, 1, 64}};  // whole q8_0 blocks per head
    } else {
      shapes = {{1, 1, 1}, {2, 1, 4}, {4, 2, 8}, {8, 2, 16}, {4, 1, 64}};
    }
    if (large) {
      shapes.push_back({32, 4, 64});
      shapes.push_back({14, 2, 128});
    }
    for (AttentionShape shape : shapes) {
      shape.cache = types;
      for (const Batch& batch : batches) {
        for (float q_scale : {1.0f, 4.0f}) {  // flat and peaked softmax
          const std::vector<int32_t> positions = batch.positions;
          const int64_t n_tokens = static_cast<int64_t>(positions.size());
          const int64_t q_size = shape.head_dim * shape.n_head * n_tokens;
          const int64_t kv_dim = shape.head_dim * shape.n_head_kv;
          const int32_t last = *std::max_element(positions.begin(), positions.end());
          auto q = std::make_shared<std::vector<float>>(
              rng.Normal(static_cast<size_t>(q_size), q_scale));
          std::vector<float> k_values = rng.Normal(static_cast<size_t>(kv_dim * batch.capacity));
          std::vector<float> v_values = rng.Normal(static_cast<size_t>(kv_dim * batch.capacity));
          // Rows after the last position hold stale data that must not leak into the result.
          for (int64_t i = (int64_t{last} + 1) * kv_dim; i < kv_dim * batch.capacity; ++i) {
            k_values[i] = 1e4f;
            v_values[i] = -1e4f;
          }
          auto k_cache =
              std::make_shared<std::vector<uint8_t>>(ToCacheBytes(types.k, k_values, kv_dim));
          auto v_cache =
              std::make_shared<std::vector<uint8_t>>(ToCacheBytes(types.v, v_values, kv_dim));
          cases.push_back(
              {absl::StrCat("cache=", KvTypesText(types), " heads=", shape.n_head, "/",
                            shape.n_head_kv, " head_dim=", shape.head_dim, " T=", n_tokens, " ",
                            PositionsText(positions), " q_scale=", q_scale),
               types.v,
               [q, k_cache, v_cache, shape, n_tokens,
                positions](Backend& b) -> absl::StatusOr<std::vector<float>> {
                 DeviceMemory mem(b);
                 SWARM_ASSIGN_OR_RETURN(float* dq, mem.Upload(*q));
                 SWARM_ASSIGN_OR_RETURN(void* dk,
                                        mem.UploadBytes(k_cache->data(), k_cache->size()));
                 SWARM_ASSIGN_OR_RETURN(void* dv,
                                        mem.UploadBytes(v_cache->data(), v_cache->size()));
                 SWARM_ASSIGN_OR_RETURN(float* out, mem.Output(q->size()));
                 b.Attention(dq, dk, dv, shape, n_tokens, positions.data(), out);
                 return mem.Download(out, q->size());
               }});
        }
      }
    }
  }
  return cases;
}

std::vector<Case> CasesFor(Op op, Random& rng, bool large) {
  switch (op) {
    case Op::kMatMul:
      return MatMulCases(rng, large);
    case Op::kAddBias:
      return AddBiasCases(rng, large);
    case Op::kGetRows:
      return GetRowsCases(rng, large);
    case Op::kRmsNorm:
      return RmsNormCases(rng, large);
    case Op::kRope:
      return RopeCases(rng, large);
    case Op::kSwiGlu:
      return SwiGluCases(rng, large);
    case Op::kAdd:
      return AddCases(rng, large);
    case Op::kAddScaledColumns:
      return AddScaledColumnsCases(rng, large);
    case Op::kStoreKv:
      return StoreKvCases(rng, large);
    case Op::kAttention:
      return AttentionCases(rng, large);
  }
  return {};
}

// The largest absolute differences, as "\n    [i] expected e, got a" lines.
std::string WorstMismatches(const std::vector<float>& actual, const std::vector<float>& expected,
                            int max_reported) {
  std::vector<size_t> order(actual.size());
  std::iota(order.begin(), order.end(), 0);
  auto diff = [&](size_t i) {
    const double d = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    return std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
  };
  const size_t n = std::min(order.size(), static_cast<size_t>(std::max(max_reported, 0)));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
                    [&](size_t a, size_t b) { return diff(a) > diff(b); });
  std::ostringstream out;
  out.precision(9);
  for (size_t j = 0; j < n; ++j) {
    const size_t i = order[j];
    if (diff(i) == 0.0) break;
    out << "\n    [" << i << "] expected " << expected[i] << ", got " << actual[i];
  }
  return out.str();
}

}  // namespace

ConformanceReport RunConformance(Backend& under_test, Op op, const ConformanceOptions& options) {
  ConformanceReport report;
  CpuReferenceBackend reference;
  Random rng(options.seed + static_cast<uint64_t>(op) * 7919);
  for (const Case& c : CasesFor(op, rng, options.large_shapes)) {
    CaseResult result;
    result.op = std::string(OpName(op));
    result.description = c.description;
    result.bound = DefaultNmseBound(op, c.type);
    if (options.adjust_bound) result.bound = options.adjust_bound(op, c.type, result.bound);

    absl::StatusOr<std::vector<float>> expected = c.run(reference);
    absl::StatusOr<std::vector<float>> actual = c.run(under_test);
    if (!expected.ok()) {
      result.nmse = std::numeric_limits<double>::infinity();
      result.details = absl::StrCat("\n    reference failed: ", expected.status().ToString());
    } else if (!actual.ok()) {
      result.nmse = std::numeric_limits<double>::infinity();
      result.details = absl::StrCat("\n    backend failed: ", actual.status().ToString());
    } else if (actual->size() != expected->size()) {
      result.nmse = std::numeric_limits<double>::infinity();
      result.details = "\n    output sizes differ";
    } else {
      result.nmse = Nmse(actual->data(), expected->data(), actual->size());
      result.passed = result.nmse <= result.bound;
      if (!result.passed) {
        result.details = WorstMismatches(*actual, *expected, options.max_reported_mismatches);
      }
    }
    report.cases.push_back(std::move(result));
  }
  return report;
}

ConformanceReport RunMemoryConformance(Backend& under_test) {
  ConformanceReport report;
  auto check = [&](std::string description, absl::Status status) {
    CaseResult result;
    result.op = "Memory";
    result.description = std::move(description);
    result.passed = status.ok();
    result.nmse = status.ok() ? 0.0 : std::numeric_limits<double>::infinity();
    if (!status.ok()) result.details = absl::StrCat("\n    ", status.ToString());
    report.cases.push_back(std::move(result));
  };
  std::mt19937 rng(7);
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{4096}, size_t{1} << 20}) {
    check(absl::StrCat("memory round trip of ", bytes, " bytes"), [&]() -> absl::Status {
      SWARM_ASSIGN_OR_RETURN(std::unique_ptr<Buffer> buffer, under_test.Allocate(bytes));
      if (buffer->size() < bytes) return absl::InternalError("buffer smaller than requested");
      if (bytes == 0) return absl::OkStatus();
      if (buffer->data() == nullptr) return absl::InternalError("null data");
      std::vector<uint8_t> in(bytes);
      for (uint8_t& b : in) b = static_cast<uint8_t>(rng());
      SWARM_RETURN_IF_ERROR(under_test.CopyToBackend(buffer->data(), in.data(), bytes));
      // A copy into the middle of the buffer must leave the rest alone.
      const size_t offset = bytes / 3;
      const size_t length = bytes / 3;
      std::vector<uint8_t> patch(length, 0xA5);
      SWARM_RETURN_IF_ERROR(under_test.CopyToBackend(static_cast<uint8_t*>(buffer->data()) + offset,
                                                     patch.data(), length));
      std::copy(patch.begin(), patch.end(), in.begin() + static_cast<std::ptrdiff_t>(offset));
      SWARM_RETURN_IF_ERROR(under_test.Synchronize());
      std::vector<uint8_t> out(bytes);
      SWARM_RETURN_IF_ERROR(under_test.CopyToHost(out.data(), buffer->data(), bytes));
      SWARM_RETURN_IF_ERROR(under_test.Synchronize());
      if (out != in) return absl::InternalError("bytes differ after the round trip");
      return absl::OkStatus();
    }());
  }
  check("PrepareWeight rejects an unknown type", [&]() -> absl::Status {
    std::vector<std::unique_ptr<Buffer>> storage;
    const uint8_t dummy[64] = {};
    Weight bad{static_cast<GgmlType>(99), 32, 1, dummy};
    if (under_test.PrepareWeight(bad, storage).ok()) {
      return absl::InternalError("PrepareWeight accepted type id 99");
    }
    return absl::OkStatus();
  }());
  return report;
}

ConformanceReport RunAllConformance(Backend& under_test, const ConformanceOptions& options) {
  ConformanceReport all = RunMemoryConformance(under_test);
  for (Op op : kAllOps) {
    ConformanceReport r = RunConformance(under_test, op, options);
    all.cases.insert(all.cases.end(), r.cases.begin(), r.cases.end());
  }
  return all;
}

// ---- gtest fixture -------------------------------------------------------------------------

std::string BackendUnderTestName(const ::testing::TestParamInfo<BackendUnderTest>& info) {
  return info.param.name;
}

void BackendConformanceTest::SetUp() {
  backend_ = GetParam().make();
  ASSERT_NE(backend_, nullptr) << "the factory of " << GetParam().name << " returned null";
}

// Test files that link this harness but instantiate nothing are fine.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BackendConformanceTest);

TEST_P(BackendConformanceTest, Memory) { EXPECT_TRUE(RunMemoryConformance(*backend_).Ok()); }
TEST_P(BackendConformanceTest, MatMul) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kMatMul, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, AddBias) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kAddBias, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, GetRows) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kGetRows, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, RmsNorm) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kRmsNorm, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, Rope) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kRope, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, SwiGlu) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kSwiGlu, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, Add) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kAdd, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, StoreKv) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kStoreKv, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, Attention) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kAttention, GetParam().options).Ok());
}
TEST_P(BackendConformanceTest, AddScaledColumns) {
  EXPECT_TRUE(RunConformance(*backend_, Op::kAddScaledColumns, GetParam().options).Ok());
}

}  // namespace swarm::kernels::testing
