// What the processor (and the OS) lets this process run: instruction-set extensions read with
// cpuid/xgetbv, AMX tile permission asked with arch_prctl, and the physical core count. Value types
// and free functions; safe to call from any thread.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace swarm::kernels::cpu {

struct CpuFeatures {
  bool avx2 = false;         // with FMA and F16C (every AVX2 CPU has them; required together)
  bool avx512 = false;       // F + BW + VL + DQ, and the OS saves zmm state
  bool avx512_vnni = false;  // vpdpbusd / vpdpwssd on zmm
  bool avx512_bf16 = false;  // vdpbf16ps
  bool avx_vnni = false;     // VEX-encoded vpdpbusd (ymm)
  bool amx_tile = false;     // cpuid advertises AMX tiles (bf16/int8)...
  bool amx_int8 = false;
  bool amx_bf16 = false;
  bool amx_usable = false;  // ...and the kernel granted this process the tile state
  std::string vendor;
  std::string brand;

  std::string Summary() const;  // e.g. "avx2 avx512 avx512_vnni avx512_bf16"
};

// Reads cpuid/xgetbv. Does not ask for AMX permission (see RequestAmxPermission).
CpuFeatures DetectCpuFeatures();

// Asks the kernel for the AMX tile data state (ARCH_REQ_XCOMP_PERM). True when granted; false on
// CPUs or kernels without AMX, and in virtual machines that advertise AMX but cannot run it.
bool RequestAmxPermission();

// The instruction-set levels the optimized CPU backend has kernels for, best last.
enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

std::string_view IsaName(Isa isa);
// "generic", "avx2", "avx512".
absl::StatusOr<Isa> ParseIsa(std::string_view name);
bool IsaSupported(Isa isa, const CpuFeatures& features);
Isa BestIsa(const CpuFeatures& features);

// Physical cores this process may run on (CPUs in its affinity mask, SMT siblings counted once);
// at least 1.
int PhysicalCoreCount();

}  // namespace swarm::kernels::cpu
