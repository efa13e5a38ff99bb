// Rounding and fitting helpers shared by the reference (de)quantizers of quant_reference.cpp and
// the per-type files (quant_q*.cpp): ggml's nearest_int, make_qkx2_quants, make_qx_quants and
// get_scale_min_k4, reproduced bit for bit. Pure functions; internal to the kernels module.
#pragma once

#include <cstdint>

namespace swarm::kernels::quant_internal {

// Groups whose largest magnitude is below this count as all zero (ggml's GROUP_MAX_EPS).
inline constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even (ggml's nearest_int); exact for |x| < 2^22, some int without
// undefined behavior otherwise.
int NearestInt(float x);

// A C cast of an in-range float to int8 (truncation); out-of-range values saturate, NaN gives 0.
int8_t SaturateToInt8(float v);

// The error make_qkx2_quants minimizes over its candidate scales: ggml passes use_mad = false
// (squared error) for Q4_K and Q5_K and true (absolute error) for Q2_K.
enum class FitError { kSquared, kAbsolute };

// Fits x[i] ~= scale * L[i] - the_min with L in [0, nmax] (ggml's make_qkx2_quants). Returns
// scale; *the_min is >= 0.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                     FitError error);

// Fits x[i] ~= scale * (L[i] - nmax) (ggml's make_qx_quants, rmse_type 1, no quant weights).
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block's 12 scale bytes.
void GetScaleMinK4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min);

// Q4_K's and Q5_K's super-block header: the 8 sub-block scales and mins as 6-bit values against
// fp16 super-scales (max / 63), packed into the 12 `packed` bytes as GetScaleMinK4 reads them.
void PackScalesMinsK4(const float* scales, const float* mins, float max_scale, float max_min,
                      uint8_t* packed, uint16_t* d, uint16_t* dmin);

// Requantizes a super-block of 256 values against its header as stored (fp16 super-scales times
// 6-bit sub-scales): L[i] in [0, nmax]. Sub-blocks whose scale is zero keep their L.
void RequantizeK4(const float* x, const uint8_t* packed, uint16_t d, uint16_t dmin, int nmax,
                  uint8_t* L);

}  // namespace swarm::kernels::quant_internal
