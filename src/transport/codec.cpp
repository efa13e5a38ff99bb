#include "transport/codec.h"

#include <zstd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "absl/strings/str_cat.h"
#include "base/checked_math.h"
#include "base/half.h"
#include "base/status_macros.h"

namespace swarm::transport {

struct CodecWorkspace::Impl {
  ZSTD_CCtx* cctx = nullptr;
  ZSTD_DCtx* dctx = nullptr;
  ~Impl() {
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
  }
};

CodecWorkspace::CodecWorkspace() : impl_(std::make_unique<Impl>()) {}
CodecWorkspace::~CodecWorkspace() = default;

namespace {

uint64_t ScaleBytes(const Codec& codec) { return codec.scale_f16 ? 2 : 4; }

uint64_t NumBlocks(uint64_t n, uint32_t block_size) {
  return n / block_size + (n % block_size != 0 ? 1 : 0);
}

// Unaligned little-endian loads/stores: received frames carry no alignment guarantee.
template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// The scale as the decoder will see it, so both sides quantize against the same number.
float StoredScale(float scale, bool as_f16) {
  if (!as_f16) return scale;
  if (std::isnan(scale)) return scale;
  float stored = HalfToFloat(FloatToHalf(scale));
  if (std::isinf(stored)) stored = 65504.0f;  // clamp: values then saturate at +-127
  return stored;
}

void EncodeInt8(const float* x, size_t n, const Codec& codec, uint8_t* out) {
  // out: [n_blocks scales][n int8 values]
  const uint64_t block = codec.block_size;
  const uint64_t n_blocks = NumBlocks(n, codec.block_size);
  uint8_t* scales = out;
  int8_t* qs = reinterpret_cast<int8_t*>(out + n_blocks * ScaleBytes(codec));
  for (uint64_t b = 0; b < n_blocks; ++b) {
    const size_t begin = b * block;
    const size_t end = std::min<size_t>(n, begin + block);
    float absmax = 0.0f;
    bool finite = true;
    for (size_t i = begin; i < end; ++i) {
      const float a = std::fabs(x[i]);
      finite &= (a <= std::numeric_limits<float>::max());  // false for NaN and Inf
      absmax = a > absmax ? a : absmax;
    }
    float scale = finite ? absmax / 127.0f : std::numeric_limits<float>::quiet_NaN();
    scale = StoredScale(scale, codec.scale_f16);
    if (codec.scale_f16) {
      Store<uint16_t>(scales + b * 2, FloatToHalf(scale));
    } else {
      Store<float>(scales + b * 4, scale);
    }
    if (!(std::isfinite(scale) && scale > 0.0f)) {
      std::memset(qs + begin, 0, end - begin);
      continue;
    }
    // A subnormal scale (a block whose absmax is below about 3.7e-37) has no finite inverse:
    // multiplying by inf would saturate every nonzero value and turn 0 into NaN, whose
    // conversion to int8 is undefined. Such blocks divide instead.
    const float inverse = 1.0f / scale;
    const bool by_inverse = std::isfinite(inverse);
    for (size_t i = begin; i < end; ++i) {
      // Clamp first (a rounded-down f16 scale can push |x / scale| past 127), then round to
      // nearest even by adding and removing 1.5 * 2^23; exact for |v| < 2^22.
      const float q = by_inverse ? x[i] * inverse : x[i] / scale;
      const float v = std::clamp(q, -127.0f, 127.0f);
      qs[i] = static_cast<int8_t>((v + 12582912.0f) - 12582912.0f);
    }
  }
}

void DecodeInt8(const uint8_t* raw, const Codec& codec, std::span<float> out) {
  const uint64_t block = codec.block_size;
  const uint64_t n_blocks = NumBlocks(out.size(), codec.block_size);
  const uint8_t* scales = raw;
  const int8_t* qs = reinterpret_cast<const int8_t*>(raw + n_blocks * ScaleBytes(codec));
  for (uint64_t b = 0; b < n_blocks; ++b) {
    const float scale =
        codec.scale_f16 ? HalfToFloat(Load<uint16_t>(scales + b * 2)) : Load<float>(scales + b * 4);
    const size_t begin = b * block;
    const size_t end = std::min<size_t>(out.size(), begin + block);
    for (size_t i = begin; i < end; ++i) out[i] = static_cast<float>(qs[i]) * scale;
  }
}

void EncodeRaw(const float* x, size_t n, const Codec& codec, uint8_t* out) {
  switch (codec.dtype) {
    case Dtype::kF32:
      std::memcpy(out, x, n * sizeof(float));
      break;
    case Dtype::kF16:
      for (size_t i = 0; i < n; ++i) Store<uint16_t>(out + 2 * i, FloatToHalf(x[i]));
      break;
    case Dtype::kBf16:
      for (size_t i = 0; i < n; ++i) Store<uint16_t>(out + 2 * i, FloatToBf16(x[i]));
      break;
    case Dtype::kInt8Block:
      EncodeInt8(x, n, codec, out);
      break;
  }
}

// raw holds exactly RawEncodedSize(codec, out.size()) bytes (checked by the caller).
void DecodeRaw(const uint8_t* raw, const Codec& codec, std::span<float> out) {
  switch (codec.dtype) {
    case Dtype::kF32:
      if (!out.empty()) std::memcpy(out.data(), raw, out.size() * sizeof(float));
      break;
    case Dtype::kF16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = HalfToFloat(Load<uint16_t>(raw + 2 * i));
      break;
    case Dtype::kBf16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = Bf16ToFloat(Load<uint16_t>(raw + 2 * i));
      break;
    case Dtype::kInt8Block:
      DecodeInt8(raw, codec, out);
      break;
  }
}

}  // namespace

absl::Status ValidateCodec(const Codec& codec) {
  switch (codec.dtype) {
    case Dtype::kF32:
    case Dtype::kF16:
    case Dtype::kBf16:
      return absl::OkStatus();
    case Dtype::kInt8Block:
      if (codec.block_size < kMinInt8BlockSize || codec.block_size > kMaxInt8BlockSize) {
        return absl::InvalidArgumentError(absl::StrCat("int8 block size ", codec.block_size,
                                                       " outside [", kMinInt8BlockSize, ", ",
                                                       kMaxInt8BlockSize, "]"));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown codec dtype ", static_cast<int>(codec.dtype)));
}

absl::StatusOr<Codec> ParseCodec(std::string_view name) {
  Codec codec;
  std::string_view base = name;
  if (size_t plus = name.find('+'); plus != std::string_view::npos) {
    base = name.substr(0, plus);
    std::string_view suffix = name.substr(plus + 1);
    if (suffix == "zstd") {
      codec.zstd = true;
    } else if (suffix.substr(0, 5) == "zstd:") {
      codec.zstd = true;
      std::string_view level = suffix.substr(5);
      auto [ptr, ec] = std::from_chars(level.data(), level.data() + level.size(), codec.zstd_level);
      if (ec != std::errc() || ptr != level.data() + level.size() || codec.zstd_level < 1 ||
          codec.zstd_level > ZSTD_maxCLevel()) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad zstd level in codec '", std::string(name), "'"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown codec suffix in '", std::string(name),
                                                     "' (expected +zstd or +zstd:LEVEL)"));
    }
  }
  std::string_view dtype = base;
  if (size_t slash = base.find('/'); slash != std::string_view::npos) {
    dtype = base.substr(0, slash);
    std::string_view block = base.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(block.data(), block.data() + block.size(), codec.block_size);
    if (ec != std::errc() || ptr != block.data() + block.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad block size in codec '", std::string(name), "'"));
    }
    if (dtype != "int8" && dtype != "int8h") {
      return absl::InvalidArgumentError(
          absl::StrCat("only int8 codecs take a block size: '", std::string(name), "'"));
    }
  }
  if (dtype == "f32") {
    codec.dtype = Dtype::kF32;
  } else if (dtype == "f16") {
    codec.dtype = Dtype::kF16;
  } else if (dtype == "bf16") {
    codec.dtype = Dtype::kBf16;
  } else if (dtype == "int8") {
    codec.dtype = Dtype::kInt8Block;
  } else if (dtype == "int8h") {
    codec.dtype = Dtype::kInt8Block;
    codec.scale_f16 = true;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown codec '", std::string(name),
                                                   "' (expected f32, f16, bf16, int8 or int8h)"));
  }
  SWARM_RETURN_IF_ERROR(ValidateCodec(codec));
  return codec;
}

std::string CodecName(const Codec& codec) {
  std::string name;
  switch (codec.dtype) {
    case Dtype::kF32:
      name = "f32";
      break;
    case Dtype::kF16:
      name = "f16";
      break;
    case Dtype::kBf16:
      name = "bf16";
      break;
    case Dtype::kInt8Block:
      name = codec.scale_f16 ? "int8h" : "int8";
      if (codec.block_size != kDefaultInt8BlockSize) absl::StrAppend(&name, "/", codec.block_size);
      break;
    default:
      name = absl::StrCat("dtype", static_cast<int>(codec.dtype));
  }
  if (codec.zstd) {
    absl::StrAppend(&name, "+zstd");
    if (codec.zstd_level != kDefaultZstdLevel) absl::StrAppend(&name, ":", codec.zstd_level);
  }
  return name;
}

absl::StatusOr<uint64_t> RawEncodedSize(const Codec& codec, uint64_t n) {
  SWARM_RETURN_IF_ERROR(ValidateCodec(codec));
  std::optional<uint64_t> size;
  switch (codec.dtype) {
    case Dtype::kF32:
      size = CheckedMul(n, 4);
      break;
    case Dtype::kF16:
    case Dtype::kBf16:
      size = CheckedMul(n, 2);
      break;
    case Dtype::kInt8Block:
      if (auto scales = CheckedMul(NumBlocks(n, codec.block_size), ScaleBytes(codec))) {
        size = CheckedAdd(*scales, n);
      }
      break;
  }
  if (!size) return absl::InvalidArgumentError(absl::StrCat("tensor of ", n, " values overflows"));
  return *size;
}

absl::StatusOr<uint64_t> MaxEncodedSize(const Codec& codec, uint64_t n) {
  SWARM_ASSIGN_OR_RETURN(uint64_t raw, RawEncodedSize(codec, n));
  if (!codec.zstd) return raw;
  // ZSTD_COMPRESSBOUND: raw + raw/256 + a small constant.
  auto bound = CheckedAdd(raw, raw / 128 + 1024);
  if (!bound) return absl::InvalidArgumentError("tensor size overflows");
  return *bound;
}

absl::StatusOr<std::vector<uint8_t>> EncodeTensor(const float* x, size_t n, const Codec& codec,
                                                  CodecWorkspace* workspace) {
  SWARM_ASSIGN_OR_RETURN(uint64_t raw_size, RawEncodedSize(codec, n));
  if (n > 0 && x == nullptr) return absl::InvalidArgumentError("null input");
  try {
    if (!codec.zstd) {
      std::vector<uint8_t> out(raw_size);
      EncodeRaw(x, n, codec, out.data());
      return out;
    }
    std::vector<uint8_t> raw(raw_size);
    EncodeRaw(x, n, codec, raw.data());
    std::vector<uint8_t> out(ZSTD_compressBound(raw.size()));
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> local(nullptr, ZSTD_freeCCtx);
    ZSTD_CCtx* cctx;
    if (workspace != nullptr) {
      auto& impl = workspace->impl();
      if (impl.cctx == nullptr) impl.cctx = ZSTD_createCCtx();
      cctx = impl.cctx;
    } else {
      local.reset(ZSTD_createCCtx());
      cctx = local.get();
    }
    if (cctx == nullptr) return absl::ResourceExhaustedError("ZSTD_createCCtx failed");
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, codec.zstd_level);
    // A 4-byte checksum: a corrupted frame becomes DataLoss instead of silently wrong values.
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    const size_t written = ZSTD_compress2(cctx, out.data(), out.size(), raw.data(), raw.size());
    if (ZSTD_isError(written)) {
      return absl::InternalError(absl::StrCat("zstd compress: ", ZSTD_getErrorName(written)));
    }
    out.resize(written);
    return out;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory encoding ", n, " values"));
  }
}

absl::Status DecodeTensorInto(std::span<const uint8_t> bytes, std::span<float> out,
                              const Codec& codec, CodecWorkspace* workspace) {
  SWARM_ASSIGN_OR_RETURN(uint64_t raw_size, RawEncodedSize(codec, out.size()));
  if (!codec.zstd) {
    if (bytes.size() != raw_size) {
      return absl::DataLossError(absl::StrCat(CodecName(codec), " frame of ", bytes.size(),
                                              " bytes, expected ", raw_size, " for ", out.size(),
                                              " values"));
    }
    DecodeRaw(bytes.data(), codec, out);
    return absl::OkStatus();
  }
  // Reject a frame that declares another size before allocating anything for it.
  const unsigned long long declared = ZSTD_getFrameContentSize(bytes.data(), bytes.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return absl::DataLossError("not a zstd frame");
  // Our encoder always declares the size; requiring it means a frame is checked against the
  // expected size before a single byte is inflated.
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) {
    return absl::DataLossError("zstd frame does not declare its content size");
  }
  if (declared != raw_size) {
    return absl::DataLossError(absl::StrCat("zstd frame declares ", declared, " bytes, expected ",
                                            raw_size, " for ", out.size(), " values"));
  }
  try {
    std::vector<uint8_t> raw(raw_size);
    // The destination is exactly the expected size: zstd stops with an error rather than
    // writing past it, whatever the frame claims.
    size_t got;
    if (workspace != nullptr) {
      auto& impl = workspace->impl();
      if (impl.dctx == nullptr) impl.dctx = ZSTD_createDCtx();
      if (impl.dctx == nullptr) return absl::ResourceExhaustedError("ZSTD_createDCtx failed");
      got = ZSTD_decompressDCtx(impl.dctx, raw.data(), raw.size(), bytes.data(), bytes.size());
    } else {
      got = ZSTD_decompress(raw.data(), raw.size(), bytes.data(), bytes.size());
    }
    if (ZSTD_isError(got)) {
      return absl::DataLossError(absl::StrCat("zstd: ", ZSTD_getErrorName(got)));
    }
    if (got != raw_size) {
      return absl::DataLossError(
          absl::StrCat("zstd frame holds ", got, " bytes, expected ", raw_size));
    }
    DecodeRaw(raw.data(), codec, out);
    return absl::OkStatus();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory decoding ", out.size(), " values"));
  }
}

absl::StatusOr<std::vector<float>> DecodeTensor(std::span<const uint8_t> bytes, size_t expected_n,
                                                const Codec& codec, CodecWorkspace* workspace) {
  // Check the frame before allocating the output.
  SWARM_ASSIGN_OR_RETURN(uint64_t raw_size, RawEncodedSize(codec, expected_n));
  if (!codec.zstd && bytes.size() != raw_size) {
    return absl::DataLossError(absl::StrCat(CodecName(codec), " frame of ", bytes.size(),
                                            " bytes, expected ", raw_size, " for ", expected_n,
                                            " values"));
  }
  if (codec.zstd && ZSTD_getFrameContentSize(bytes.data(), bytes.size()) != raw_size) {
    return absl::DataLossError(absl::StrCat("zstd frame does not declare ", raw_size, " bytes for ",
                                            expected_n, " values"));
  }
  try {
    std::vector<float> out(expected_n);
    SWARM_RETURN_IF_ERROR(DecodeTensorInto(bytes, out, codec, workspace));
    return out;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory decoding ", expected_n, " values"));
  }
}

CodecError CompareTensors(std::span<const float> reference, std::span<const float> actual) {
  CodecError e;
  double err2 = 0, ref2 = 0;
  const size_t n = std::min(reference.size(), actual.size());
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(actual[i]) - static_cast<double>(reference[i]);
    err2 += d * d;
    ref2 += static_cast<double>(reference[i]) * reference[i];
    e.max_abs_error = std::max(e.max_abs_error, std::fabs(d));
  }
  e.nmse = ref2 > 0 ? err2 / ref2 : err2;
  return e;
}

absl::StatusOr<CodecError> MeasureCodec(const float* x, size_t n, const Codec& codec) {
  CodecWorkspace workspace;
  SWARM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodeTensor(x, n, codec, &workspace));
  SWARM_ASSIGN_OR_RETURN(std::vector<float> y, DecodeTensor(bytes, n, codec, &workspace));
  CodecError e = CompareTensors(std::span<const float>(x, n), y);
  e.encoded_bytes = bytes.size();
  e.bytes_per_value = n > 0 ? static_cast<double>(bytes.size()) / n : 0.0;
  return e;
}

}  // namespace swarm::transport
