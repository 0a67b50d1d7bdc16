// Which compiled copy of a vector kernel (vector_variants.inc) this CPU runs.
#ifndef LENSD_CORE_ENGINE_MODEL_VECTOR_ISA_H_
#define LENSD_CORE_ENGINE_MODEL_VECTOR_ISA_H_

#include <cstdlib>
#include <string_view>

namespace lensd::engine {

enum class VectorIsa { kAvx512, kAvx2, kBaseline };

// AVX-512 (F, BW, DQ, VL), else AVX2 with FMA, else the baseline; detected once. The
// environment variable LENSD_VECTOR_ISA=avx2 or =baseline chooses a lesser one (the tests run each
// kernel's copies that way).
inline VectorIsa CpuVectorIsa() {
  static const VectorIsa isa = [] {
    const char* forced = std::getenv("LENSD_VECTOR_ISA");
    const std::string_view want = forced == nullptr ? "" : forced;
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want == "baseline" || !avx2) return VectorIsa::kBaseline;
    if (want == "avx2") return VectorIsa::kAvx2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
      return VectorIsa::kAvx512;
    }
    return VectorIsa::kAvx2;
  }();
  return isa;
}

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_VECTOR_ISA_H_
