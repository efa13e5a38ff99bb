#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/absl_compat.h"

namespace swarm::kernels::cpu {
namespace {

struct Regs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

Regs CpuId(uint32_t leaf, uint32_t subleaf) {
  Regs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return Regs{};
  return r;
}

uint64_t XGetBv() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool Bit(uint32_t value, int bit) { return (value >> bit) & 1u; }

// Linux arch_prctl codes for the dynamically enabled XSTATE features (asm/prctl.h).
constexpr int kArchGetXcompPerm = 0x1022;
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtileData = 18;

}  // namespace

std::string CpuFeatures::Summary() const {
  std::vector<std::string> names;
  if (avx2) names.push_back("avx2");
  if (avx_vnni) names.push_back("avx_vnni");
  if (avx512) names.push_back("avx512");
  if (avx512_vnni) names.push_back("avx512_vnni");
  if (avx512_bf16) names.push_back("avx512_bf16");
  if (amx_tile) names.push_back(amx_usable ? "amx" : "amx(not granted)");
  return names.empty() ? std::string("generic") : absl::StrJoin(names, " ");
}

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
  const Regs leaf0 = CpuId(0, 0);
  char vendor[13] = {};
  std::memcpy(vendor, &leaf0.ebx, 4);
  std::memcpy(vendor + 4, &leaf0.edx, 4);
  std::memcpy(vendor + 8, &leaf0.ecx, 4);
  f.vendor = vendor;
  if (CpuId(0x80000000u, 0).eax >= 0x80000004u) {
    char brand[49] = {};
    for (uint32_t i = 0; i < 3; ++i) {
      const Regs r = CpuId(0x80000002u + i, 0);
      std::memcpy(brand + 16 * i, &r, 16);
    }
    f.brand = brand;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  }
  const uint32_t max_leaf = leaf0.eax;
  if (max_leaf < 7) return f;
  const Regs l1 = CpuId(1, 0);
  const bool osxsave = Bit(l1.ecx, 27);
  if (!osxsave) return f;
  const uint64_t xcr0 = XGetBv();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;    // SSE + AVX state
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool fma = Bit(l1.ecx, 12), f16c = Bit(l1.ecx, 29), avx = Bit(l1.ecx, 28);
  const Regs l7 = CpuId(7, 0);
  const Regs l7_1 = CpuId(7, 1);
  f.avx2 = ymm_state && avx && fma && f16c && Bit(l7.ebx, 5);
  const bool avx512f = Bit(l7.ebx, 16), avx512dq = Bit(l7.ebx, 17), avx512bw = Bit(l7.ebx, 30),
             avx512vl = Bit(l7.ebx, 31);
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512 && Bit(l7.ecx, 11);
  f.avx512_bf16 = f.avx512 && Bit(l7_1.eax, 5);
  f.avx_vnni = f.avx2 && Bit(l7_1.eax, 4);
  f.amx_bf16 = Bit(l7.edx, 22);
  f.amx_tile = Bit(l7.edx, 24);
  f.amx_int8 = Bit(l7.edx, 25);
  if (f.amx_tile) {
    // Only asks whether permission was already granted; RequestAmxPermission() asks for it.
    uint64_t bitmask = 0;
    if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) == 0) {
      f.amx_usable = (bitmask >> kXfeatureXtileData) & 1u;
    }
  }
  return f;
}

bool RequestAmxPermission() {
  const Regs l7 = CpuId(7, 0);
  if (!Bit(l7.edx, 24)) return false;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) != 0) return false;
  uint64_t bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask >> kXfeatureXtileData) & 1u;
}

std::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return "generic";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

absl::StatusOr<Isa> ParseIsa(std::string_view name) {
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (IsaName(isa) == name) return isa;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown instruction set '", ToAbsl(name), "' (generic, avx2, avx512)"));
}

bool IsaSupported(Isa isa, const CpuFeatures& features) {
  switch (isa) {
    case Isa::kGeneric:
      return true;
    case Isa::kAvx2:
      return features.avx2;
    case Isa::kAvx512:
      // The AVX-512 kernels use VNNI for their integer dot products.
      return features.avx512 && features.avx512_vnni;
  }
  return false;
}

Isa BestIsa(const CpuFeatures& features) {
  if (IsaSupported(Isa::kAvx512, features)) return Isa::kAvx512;
  if (IsaSupported(Isa::kAvx2, features)) return Isa::kAvx2;
  return Isa::kGeneric;
}

int PhysicalCoreCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int allowed = 0;
  std::set<std::pair<std::string, std::string>> cores;  // (package, core id)
  bool topology_known = true;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      ++allowed;
      const std::string base = absl::StrCat("/sys/devices/system/cpu/cpu", cpu, "/topology/");
      std::ifstream package(base + "physical_package_id"), core(base + "core_id");
      std::string p, c;
      if (!(package >> p) || !(core >> c)) {
        topology_known = false;
        continue;
      }
      cores.emplace(p, c);
    }
  }
  if (topology_known && !cores.empty()) return static_cast<int>(cores.size());
  if (allowed > 0) return allowed;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

}  // namespace swarm::kernels::cpu
