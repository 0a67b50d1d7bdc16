#include "core/engine/training/kl_loss.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <vector>

#include "core/engine/model/vector_isa.h"

namespace lensd::engine {
namespace {

// bfloat16 as its bits (the kernel widens them to float32 itself).
struct Bf16 {
  uint16_t bits;
};

// The kernels compiled for AVX-512, AVX2 + FMA and the baseline.
#define LENSD_VECTOR_KERNEL "core/engine/training/kl_loss_kernel.inc"
#include "core/engine/model/vector_variants.inc"
#undef LENSD_VECTOR_KERNEL

template <typename T>
void TargetRow(const float* log_p, const float* p, int64_t n, float c, double* p_log_p,
               float* grad_sum) {
  switch (CpuVectorIsa()) {
    case VectorIsa::kAvx512:
      return avx512::TargetRow<T>(log_p, p, n, c, p_log_p, grad_sum);
    case VectorIsa::kAvx2:
      return avx2::TargetRow<T>(log_p, p, n, c, p_log_p, grad_sum);
    case VectorIsa::kBaseline:
      break;
  }
  baseline::TargetRow<T>(log_p, p, n, c, p_log_p, grad_sum);
}

template <typename T>
double KlRow(const T* z, const float* p, int64_t n, float c, double p_log_p, float grad_sum,
             T* dz) {
  switch (CpuVectorIsa()) {
    case VectorIsa::kAvx512:
      return avx512::KlRow<T>(z, p, n, c, p_log_p, grad_sum, dz);
    case VectorIsa::kAvx2:
      return avx2::KlRow<T>(z, p, n, c, p_log_p, grad_sum, dz);
    case VectorIsa::kBaseline:
      break;
  }
  return baseline::KlRow<T>(z, p, n, c, p_log_p, grad_sum, dz);
}

template <typename T>
void PrepareRows(const at::Tensor& log_p, KlTarget& t) {
  const int64_t vocab = t.p.size(1);
  const float* lp = log_p.data_ptr<float>();
  const float* p = t.p.data_ptr<float>();
  at::parallel_for(0, t.p.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const auto i = static_cast<size_t>(r);
      TargetRow<T>(lp + r * vocab, p + r * vocab, vocab, t.c, &t.p_log_p[i], &t.grad_sum[i]);
    }
  });
}

template <typename T>
KlLoss CpuKlLoss(const at::Tensor& logits, const KlTarget& t) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  KlLoss out;
  out.grad = at::empty_like(logits);
  const T* z = static_cast<const T*>(logits.data_ptr());
  const float* p = t.p.data_ptr<float>();
  T* dz = static_cast<T*>(out.grad.data_ptr());
  std::vector<double> row_loss(static_cast<size_t>(rows));
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t offset = r * vocab;
      const auto i = static_cast<size_t>(r);
      row_loss[i] =
          KlRow<T>(z + offset, p + offset, vocab, t.c, t.p_log_p[i], t.grad_sum[i], dz + offset);
    }
  });
  double sum = 0;
  for (const double l : row_loss) sum += l;
  out.loss = rows > 0 ? sum / static_cast<double>(rows) : 0.0;
  return out;
}

}  // namespace

bool FusedKlLossApplies(const at::Tensor& logits) {
  return logits.device().is_cpu() &&
         (logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16);
}

KlTarget PrepareKlTarget(const at::Tensor& log_target, const at::Tensor& target, double scale,
                         at::ScalarType logits_dtype) {
  TORCH_CHECK(
      log_target.dim() == 2 && target.sizes() == log_target.sizes() && log_target.device().is_cpu(),
      "PrepareKlTarget: log_target and target must be the same [rows, vocab] on the CPU");
  TORCH_CHECK(logits_dtype == at::kFloat || logits_dtype == at::kBFloat16,
              "PrepareKlTarget: logits are float32 or bfloat16");
  KlTarget t;
  const int64_t rows = log_target.size(0);
  t.p = target.to(at::kFloat).contiguous();
  t.p_log_p.resize(static_cast<size_t>(rows));
  t.grad_sum.resize(static_cast<size_t>(rows));
  // autograd's chain: loss * scale, then the mean's 1 / rows, both in float32.
  t.c = static_cast<float>(scale) / static_cast<float>(rows);
  t.logits_dtype = logits_dtype;
  const at::Tensor log_p = log_target.to(at::kFloat).contiguous();
  if (logits_dtype == at::kFloat) {
    PrepareRows<float>(log_p, t);
  } else {
    PrepareRows<Bf16>(log_p, t);
  }
  return t;
}

KlLoss FusedKlLoss(const at::Tensor& logits, const KlTarget& target) {
  TORCH_CHECK(FusedKlLossApplies(logits) && logits.scalar_type() == target.logits_dtype,
              "FusedKlLoss: CPU logits of the dtype the target was prepared for");
  TORCH_CHECK(logits.sizes() == target.p.sizes(),
              "FusedKlLoss: logits must be [rows, vocab] as the target");
  const at::Tensor z = logits.contiguous();
  return z.scalar_type() == at::kFloat ? CpuKlLoss<float>(z, target) : CpuKlLoss<Bf16>(z, target);
}

}  // namespace lensd::engine
