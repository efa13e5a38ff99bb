// The device dequantizers (dequantize.cuh) run on the host, chunk by chunk as the kernels walk a
// row, so that their block layouts can be tested against quant_reference.cpp bit for bit on
// machines without a GPU. Test support; no device code runs.
#pragma once

#include <cstdint>

#include "kernels/cuda/device_types.h"

namespace swarm::kernels::gpu {

// dst: [n_in] floats from one row of `type`. False for a type or length the kernels do not take.
bool DequantizeRowOnHost(WType type, const void* row, int64_t n_in, float* dst);

}  // namespace swarm::kernels::gpu
