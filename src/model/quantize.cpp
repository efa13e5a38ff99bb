// QuantizeModel: plan every tensor's type first (so a missing type fails before anything is
// written), then convert row chunks on worker threads and stream them to the writer.
#include "model/quantize.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/ggml_type.h"
#include "kernels/quant_reference.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/quant_mixture.h"

namespace swarm::model {
namespace {

using kernels::GgmlType;

int64_t KeyInt(const GgufFile& file, const std::string& key, int64_t fallback) {
  absl::StatusOr<int64_t> v = file.GetInt(key);
  return v.ok() ? *v : fallback;
}

QuantModelInfo ReadModelInfo(const GgufFile& file) {
  QuantModelInfo info;
  if (absl::StatusOr<std::string_view> arch = file.GetString("general.architecture"); arch.ok()) {
    info.arch = std::string(*arch);
  }
  const std::string& a = info.arch;
  info.n_layer = KeyInt(file, a + ".block_count", 0);
  info.n_head = KeyInt(file, a + ".attention.head_count", 0);
  info.n_head_kv = KeyInt(file, a + ".attention.head_count_kv", info.n_head);
  info.n_expert = KeyInt(file, a + ".expert_count", 0);
  return info;
}

QuantTensorInfo TensorInfoOf(const GgufTensorInfo& t) {
  return {t.name, static_cast<int>(t.n_dims), t.ne[0], t.ne[1]};
}

bool IsFloat(GgmlType t) {
  return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16;
}

// Converts rows [0, n_rows) of `src` (rows of n elements of `from`) to `to`, in `threads` slices.
void ConvertRows(GgmlType from, GgmlType to, const uint8_t* src, size_t src_row_bytes, uint8_t* dst,
                 size_t dst_row_bytes, int64_t n, int64_t n_rows, int threads) {
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(n));
    for (int64_t r = begin; r < end; ++r) {
      kernels::DequantizeRow(from, src + r * src_row_bytes, row.data(), n);
      kernels::QuantizeRow(to, row.data(), dst + r * dst_row_bytes, n);
    }
  };
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(threads, n_rows));
  std::vector<std::thread> workers;
  for (int64_t s = 1; s < slices; ++s) {
    workers.emplace_back(work, n_rows * s / slices, n_rows * (s + 1) / slices);
  }
  work(0, n_rows / slices);
  for (std::thread& w : workers) w.join();
}

}  // namespace

absl::StatusOr<QuantizeReport> QuantizeModel(const std::string& in_path,
                                             const std::string& out_path,
                                             const QuantizeOptions& options) {
  SWARM_ASSIGN_OR_RETURN(QuantScheme scheme, ParseQuantScheme(options.scheme));
  SWARM_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(in_path));
  const QuantModelInfo model = ReadModelInfo(*file);

  // llama.cpp's order: the per-layer rules count tensors along it.
  std::vector<const GgufTensorInfo*> order;
  for (const GgufTensorInfo& t : file->tensors()) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(),
                   [](const GgufTensorInfo* a, const GgufTensorInfo* b) {
                     return QuantTensorOrder(a->name, b->name);
                   });
  std::vector<QuantTensorInfo> infos;
  for (const GgufTensorInfo* t : order) infos.push_back(TensorInfoOf(*t));

  QuantizeReport report;
  QuantTypeChooser chooser(scheme, model, infos);
  for (size_t i = 0; i < order.size(); ++i) {
    const GgufTensorInfo& t = *order[i];
    QuantizedTensor q{t.name, static_cast<uint32_t>(t.type), static_cast<uint32_t>(t.type), ""};
    if (ShouldQuantize(infos[i])) {
      if (!IsFloat(t.type)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor ", t.name, " is ", QuantTypeName(q.from_type),
            ": swarm quantize reads F32, F16 or BF16 models (quantizing a quantized model again "
            "loses precision)"));
      }
      SWARM_ASSIGN_OR_RETURN(q.to_type, chooser.Choose(infos[i], &q.fallback));
      // Checked before anything is written: QuantizeRow itself stops the process on a type it
      // has no quantizer for.
      if (!kernels::IsWeightType(static_cast<GgmlType>(q.to_type)) ||
          !kernels::CheckQuantizeRow(static_cast<GgmlType>(q.to_type), t.ne[0]).ok()) {
        return absl::UnimplementedError(absl::StrCat(std::string(scheme.name), " puts ", t.name,
                                                     " in ", QuantTypeName(q.to_type),
                                                     ", a type this build cannot write yet"));
      }
    }
    report.tensors.push_back(std::move(q));
  }

  GgufWriter writer;
  for (const auto& [key, value] : file->metadata()) {
    if (key == "general.alignment") continue;  // SetAlignment below
    SWARM_RETURN_IF_ERROR(writer.SetValue(key, value));
  }
  SWARM_RETURN_IF_ERROR(writer.SetAlignment(static_cast<uint32_t>(file->alignment())));
  writer.SetUint32("general.file_type", scheme.file_type);
  writer.SetUint32("general.quantization_version", 2);
  for (size_t i = 0; i < order.size(); ++i) {
    const GgufTensorInfo& t = *order[i];
    std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
    SWARM_RETURN_IF_ERROR(
        writer.AddTensor(t.name, static_cast<GgmlType>(report.tensors[i].to_type), ne));
  }
  SWARM_RETURN_IF_ERROR(writer.Begin(out_path));

  const int threads = options.threads > 0
                          ? options.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<uint8_t> buffer;
  for (size_t i = 0; i < order.size(); ++i) {
    const GgufTensorInfo& t = *order[i];
    const QuantizedTensor& q = report.tensors[i];
    const std::span<const uint8_t> data = file->TensorData(t);
    report.bytes_in += data.size();
    report.bytes_out += writer.tensor_bytes(i);
    if (q.to_type == q.from_type) {
      SWARM_RETURN_IF_ERROR(writer.WriteTensorData(data));
    } else {
      const auto from = static_cast<GgmlType>(q.from_type);
      const auto to = static_cast<GgmlType>(q.to_type);
      const int64_t n = t.ne[0];
      const int64_t n_rows = t.n_elements() / n;
      SWARM_ASSIGN_OR_RETURN(const size_t src_row, kernels::RowBytes(from, n));
      SWARM_ASSIGN_OR_RETURN(const size_t dst_row, kernels::RowBytes(to, n));
      // Chunks of about 64 MiB of output: memory stays bounded for any tensor.
      const int64_t chunk_rows =
          std::max<int64_t>(1, static_cast<int64_t>((64u << 20) / std::max<size_t>(dst_row, 1)));
      for (int64_t r = 0; r < n_rows; r += chunk_rows) {
        const int64_t rows = std::min(chunk_rows, n_rows - r);
        buffer.resize(static_cast<size_t>(rows) * dst_row);
        ConvertRows(from, to, data.data() + r * src_row, src_row, buffer.data(), dst_row, n, rows,
                    threads);
        SWARM_RETURN_IF_ERROR(writer.WriteTensorData(buffer));
      }
    }
    if (options.progress) {
      std::string line = absl::StrCat("[", i + 1, "/", order.size(), "] ", t.name, " ",
                                      QuantTypeName(q.from_type));
      if (q.to_type != q.from_type) absl::StrAppend(&line, " -> ", QuantTypeName(q.to_type));
      if (!q.fallback.empty()) absl::StrAppend(&line, " (", q.fallback, ")");
      options.progress(line);
    }
  }
  SWARM_RETURN_IF_ERROR(writer.Finish());
  return report;
}

}  // namespace swarm::model
