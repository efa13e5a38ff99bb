// Prints the golden table of tests/kernels/test_quant_llama_cpp_golden.cpp from llama.cpp itself.
// Not built by CMake: it needs a llama.cpp build's shared libraries (libggml-base.so and a CPU
// variant such as libggml-cpu-x64.so; e.g. the prebuilt ones in npm's @node-llama-cpp/linux-x64).
//   g++ -std=c++20 -O2 -I tests/kernels tests/kernels/tools/llama_cpp_golden.cpp -ldl -o golden
//   ./golden /path/to/dir/with/libggml-libs
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "portable_inputs.h"

using QuantizeFn = void (*)(const float*, void*, int64_t);
using ChunkQuantizeFn = size_t (*)(const float*, void*, int64_t, int64_t, const float*);
using DotFn = void (*)(int, float*, size_t, const void*, size_t, const void*, size_t, int);

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s LIB_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = std::string(argv[1]) + "/";
  void* base = dlopen((dir + "libggml-base.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
  void* cpu = dlopen((dir + "libggml-cpu-x64.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (base == nullptr || cpu == nullptr) {
    std::fprintf(stderr, "%s\n", dlerror());
    return 1;
  }
  reinterpret_cast<void (*)()>(dlsym(cpu, "ggml_cpu_init"))();

  struct Type {
    const char* name;      // GgmlType enumerator
    const char* quantize;  // llama.cpp's reference quantizer
    const char* dot;       // scalar dot product with the activation type, or null
    const char* act_quantize;
    size_t block_bytes, block_size, act_block_bytes, act_block_size;
  };
  const Type types[] = {
      {"kQ8_0", "quantize_row_q8_0_ref", "ggml_vec_dot_q8_0_q8_0_generic", "quantize_row_q8_0_ref",
       34, 32, 34, 32},
      {"kQ4_0", "quantize_row_q4_0_ref", "ggml_vec_dot_q4_0_q8_0_generic", "quantize_row_q8_0_ref",
       18, 32, 34, 32},
      {"kQ4_K", "quantize_row_q4_K_ref", "ggml_vec_dot_q4_K_q8_K_generic", "quantize_row_q8_K_ref",
       144, 256, 292, 256},
      {"kQ6_K", "quantize_row_q6_K_ref", "ggml_vec_dot_q6_K_q8_K_generic", "quantize_row_q8_K_ref",
       210, 256, 292, 256},
      {"kQ8_K", "quantize_row_q8_K_ref", nullptr, nullptr, 292, 256, 0, 0},
      {"kQ2_K", "quantize_row_q2_K_ref", "ggml_vec_dot_q2_K_q8_K_generic", "quantize_row_q8_K_ref",
       84, 256, 292, 256},
      {"kQ3_K", "quantize_row_q3_K_ref", "ggml_vec_dot_q3_K_q8_K_generic", "quantize_row_q8_K_ref",
       110, 256, 292, 256},
      {"kIQ4_XS", "quantize_row_iq4_xs_ref", "ggml_vec_dot_iq4_xs_q8_K_generic",
       "quantize_row_q8_K_ref", 136, 256, 292, 256},
      {"kQ4_1", "quantize_row_q4_1_ref", "ggml_vec_dot_q4_1_q8_1_generic", "quantize_row_q8_1_ref",
       20, 32, 36, 32},
      {"kQ5_0", "quantize_row_q5_0_ref", "ggml_vec_dot_q5_0_q8_0_generic", "quantize_row_q8_0_ref",
       22, 32, 34, 32},
      {"kQ5_K", "quantize_row_q5_K_ref", "ggml_vec_dot_q5_K_q8_K_generic", "quantize_row_q8_K_ref",
       176, 256, 292, 256},
      {"kQ8_1", "quantize_row_q8_1_ref", nullptr, nullptr, 36, 32, 0, 0},
      {"kQ5_1", "quantize_row_q5_1_ref", "ggml_vec_dot_q5_1_q8_1_generic", "quantize_row_q8_1_ref",
       24, 32, 36, 32},
      // quantize_iq4_nl (llama-quantize's path, searching the scale) rather than
      // quantize_row_iq4_nl_ref, which skips the search: see Quantize below.
      {"kIQ4_NL", "quantize_iq4_nl", "ggml_vec_dot_iq4_nl_q8_0_generic", "quantize_row_q8_0_ref",
       18, 32, 34, 32},
  };
  using swarm::kernels::testing::Fnv1a64;
  using swarm::kernels::testing::InputKind;
  using swarm::kernels::testing::MakeInput;
  constexpr int64_t kN = 4096;
  for (const Type& t : types) {
    void* quantize_symbol = dlsym(base, t.quantize);
    // quantize_row_*_ref(x, y, k), or a quantize_*(src, dst, nrow, n_per_row, imatrix) chunk
    // quantizer called for one row without importance weights.
    const bool chunk = std::strncmp(t.quantize, "quantize_row_", 13) != 0;
    auto quantize = [&](const float* x, void* y, int64_t k) {
      if (chunk) {
        reinterpret_cast<ChunkQuantizeFn>(quantize_symbol)(x, y, 1, k, nullptr);
      } else {
        reinterpret_cast<QuantizeFn>(quantize_symbol)(x, y, k);
      }
    };
    for (int kind = 0; kind < static_cast<int>(InputKind::kCount); ++kind) {
      const std::vector<float> x = MakeInput(static_cast<InputKind>(kind), kN, 1000 + kind);
      std::vector<uint8_t> q(kN / t.block_size * t.block_bytes, 0);
      quantize(x.data(), q.data(), kN);
      uint32_t dot_bits = 0;
      if (t.dot != nullptr) {
        const std::vector<float> a = MakeInput(InputKind::kNormal, kN, 2000 + kind);
        std::vector<uint8_t> aq(kN / t.act_block_size * t.act_block_bytes, 0);
        reinterpret_cast<QuantizeFn>(dlsym(base, t.act_quantize))(a.data(), aq.data(), kN);
        float dot = 0;
        reinterpret_cast<DotFn>(dlsym(cpu, t.dot))(static_cast<int>(kN), &dot, 0, q.data(), 0,
                                                   aq.data(), 0, 1);
        std::memcpy(&dot_bits, &dot, sizeof dot_bits);
      }
      std::printf("    {GgmlType::%s, %d, 0x%016llxull, 0x%08xu},\n", t.name, kind,
                  static_cast<unsigned long long>(Fnv1a64(q.data(), q.size())), dot_bits);
    }
  }
  return 0;
}
