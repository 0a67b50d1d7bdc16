#include "core/engine/row_stats.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace lensd::engine {
namespace {

constexpr int kLanes = 8;

struct Sums {
  float max = 0;
  double exp = 0;       // sum e^(z - max)
  double exp_z = 0;     // sum e^(z - max) z
  double weight_z = 0;  // sum w z
  double weight = 0;    // sum w
  int64_t above = 0;    // #{z > z_target}
};

// The kernel compiled for AVX2 + FMA (chosen at run time when the CPU has them) and for the
// baseline.
namespace avx2 {
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#include "core/engine/row_stats_kernel.inc"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
}  // namespace avx2

namespace baseline {
#include "core/engine/row_stats_kernel.inc"
}  // namespace baseline

template <bool kWeights, bool kTarget>
Sums RowPass(const float* z, const float* w, int64_t n, float z_target) {
  static const bool kAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return kAvx2 ? avx2::RowPass<kWeights, kTarget>(z, w, n, z_target)
               : baseline::RowPass<kWeights, kTarget>(z, w, n, z_target);
}

RowStats CpuRowStats(const at::Tensor& logits, const at::Tensor& weights,
                     const at::Tensor& targets) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const auto f = at::TensorOptions().dtype(at::kFloat);
  RowStats out;
  out.log_normalizer = at::empty({rows}, f);
  out.entropy = at::empty({rows}, f);
  out.max_logit = at::empty({rows}, f);
  if (weights.defined()) out.cross_with = at::empty({rows}, f);
  if (targets.defined()) {
    out.target_logit = at::empty({rows}, f);
    out.rank = at::empty({rows}, f.dtype(at::kLong));
  }
  const float* z = logits.data_ptr<float>();
  const float* w = weights.defined() ? weights.data_ptr<float>() : nullptr;
  const int64_t* t = targets.defined() ? targets.data_ptr<int64_t>() : nullptr;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* zr = z + r * vocab;
      const float* wr = w != nullptr ? w + r * vocab : nullptr;
      const int64_t target = t != nullptr ? t[r] : -1;
      const float z_target = target >= 0 ? zr[target] : std::numeric_limits<float>::infinity();
      const Sums s = wr != nullptr
                         ? (t != nullptr ? RowPass<true, true>(zr, wr, vocab, z_target)
                                         : RowPass<true, false>(zr, wr, vocab, z_target))
                         : (t != nullptr ? RowPass<false, true>(zr, wr, vocab, z_target)
                                         : RowPass<false, false>(zr, wr, vocab, z_target));
      const double lse = s.max + std::log(s.exp);
      out.log_normalizer.data_ptr<float>()[r] = static_cast<float>(lse);
      out.entropy.data_ptr<float>()[r] = static_cast<float>(lse - s.exp_z / s.exp);
      out.max_logit.data_ptr<float>()[r] = s.max;
      if (wr != nullptr)
        out.cross_with.data_ptr<float>()[r] = static_cast<float>(s.weight_z - lse * s.weight);
      if (t != nullptr) {
        out.target_logit.data_ptr<float>()[r] =
            target >= 0 ? zr[target] : std::numeric_limits<float>::quiet_NaN();
        out.rank.data_ptr<int64_t>()[r] = target >= 0 ? s.above + 1 : 0;
      }
    }
  });
  return out;
}

RowStats AtenRowStats(const at::Tensor& logits, const at::Tensor& weights,
                      const at::Tensor& targets) {
  RowStats out;
  out.log_normalizer = at::logsumexp(logits, -1);
  out.entropy = out.log_normalizer - (at::softmax(logits, -1) * logits).sum(-1);
  out.max_logit = std::get<0>(logits.max(-1));
  if (weights.defined())
    out.cross_with = (weights * logits).sum(-1) - out.log_normalizer * weights.sum(-1);
  if (targets.defined()) {
    const at::Tensor picked = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);
    out.target_logit = at::where(targets >= 0, picked,
                                 at::full_like(picked, std::numeric_limits<float>::quiet_NaN()));
    const at::Tensor rank = (logits > picked.unsqueeze(-1)).sum(-1) + 1;
    out.rank = at::where(targets >= 0, rank, at::zeros_like(rank));
  }
  return out;
}

}  // namespace

RowStats ComputeRowStats(const at::Tensor& logits, const at::Tensor& weights,
                         const at::Tensor& targets) {
  if (logits.device().is_cpu()) {
    return CpuRowStats(logits.to(at::kFloat).contiguous(),
                       weights.defined() ? weights.to(at::kFloat).contiguous() : weights,
                       targets.defined() ? targets.to(at::kLong).contiguous() : targets);
  }
  return AtenRowStats(logits.to(at::kFloat), weights.defined() ? weights.to(at::kFloat) : weights,
                      targets);
}

}  // namespace lensd::engine
