#include "core/engine/lens/row_stats.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>

#include "core/engine/model/vector_isa.h"

namespace lensd::engine {
namespace {

// Rows of at most this many top entries are kept by the fused pass; larger k use at::topk.
constexpr int64_t kMaxFusedTopK = 64;

// bfloat16 as its bits (the kernel widens them to float32 itself).
struct Bf16 {
  uint16_t bits;
};

// The k largest logits of a row and their ids, largest first; of equal logits, the lower id first.
class TopK {
 public:
  TopK(float* values, int64_t* ids, int64_t k) : values_(values), ids_(ids), k_(k) {}
  // Offer only what beats this (all of a row while fewer than k are held).
  float Threshold() const {
    return count_ < k_ ? -std::numeric_limits<float>::infinity() : values_[k_ - 1];
  }
  bool Full() const { return count_ == k_; }
  void Offer(float value, int64_t id) {
    if (count_ == k_ && !(value > values_[k_ - 1])) return;
    if (value != value) return;  // NaN
    int64_t p = count_ < k_ ? count_++ : k_ - 1;
    for (; p > 0 && values_[p - 1] < value; --p) {
      values_[p] = values_[p - 1];
      ids_[p] = ids_[p - 1];
    }
    values_[p] = value;
    ids_[p] = id;
  }
  // A row with NaN logits may leave places empty: NaN with id 0 there.
  void FillRest() {
    for (; count_ < k_; ++count_) {
      values_[count_] = std::numeric_limits<float>::quiet_NaN();
      ids_[count_] = 0;
    }
  }

 private:
  float* values_;
  int64_t* ids_;
  int64_t k_;
  int64_t count_ = 0;
};

struct Sums {
  float max = 0;
  double exp = 0;       // sum e^(z - max)
  double exp_z = 0;     // sum e^(z - max) z
  double weight_z = 0;  // sum w z
  double weight = 0;    // sum w
  int64_t above = 0;    // #{z > z_target}
};

// The kernel compiled for AVX-512, AVX2 + FMA and the baseline.
#define LENSD_VECTOR_KERNEL "core/engine/lens/row_stats_kernel.inc"
#include "core/engine/model/vector_variants.inc"
#undef LENSD_VECTOR_KERNEL

template <typename T, bool kWeights, bool kTarget>
Sums RowPass(const T* z, const float* w, int64_t n, float z_target, TopK* top) {
  switch (CpuVectorIsa()) {
    case VectorIsa::kAvx512:
      return avx512::RowPass<T, kWeights, kTarget>(z, w, n, z_target, top);
    case VectorIsa::kAvx2:
      return avx2::RowPass<T, kWeights, kTarget>(z, w, n, z_target, top);
    case VectorIsa::kBaseline:
      break;
  }
  return baseline::RowPass<T, kWeights, kTarget>(z, w, n, z_target, top);
}

template <typename T>
Sums AnyRowPass(const T* z, const float* w, int64_t n, int64_t target, float z_target, TopK* top) {
  if (w != nullptr) {
    return target >= 0 ? RowPass<T, true, true>(z, w, n, z_target, top)
                       : RowPass<T, true, false>(z, w, n, z_target, top);
  }
  return target >= 0 ? RowPass<T, false, true>(z, w, n, z_target, top)
                     : RowPass<T, false, false>(z, w, n, z_target, top);
}

float ScalarAt(const float* z, int64_t i) { return z[i]; }
float ScalarAt(const Bf16* z, int64_t i) {
  const uint32_t bits = uint32_t{z[i].bits} << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// `logits` float32 or bfloat16, contiguous; `weights` float32 and `targets` int64, contiguous.
template <typename T>
RowStats CpuRowStats(const at::Tensor& logits, const at::Tensor& weights, const at::Tensor& targets,
                     int64_t top_k) {
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
  const int64_t k = std::min(top_k, vocab);
  if (k > 0) {
    out.top_logits = at::empty({rows, k}, f);
    out.top_ids = at::empty({rows, k}, f.dtype(at::kLong));
  }
  const T* z = static_cast<const T*>(logits.data_ptr());
  const float* w = weights.defined() ? weights.data_ptr<float>() : nullptr;
  const int64_t* t = targets.defined() ? targets.data_ptr<int64_t>() : nullptr;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* zr = z + r * vocab;
      const float* wr = w != nullptr ? w + r * vocab : nullptr;
      const int64_t target = t != nullptr ? t[r] : -1;
      const float z_target =
          target >= 0 ? ScalarAt(zr, target) : std::numeric_limits<float>::infinity();
      std::optional<TopK> top;
      if (k > 0)
        top.emplace(out.top_logits.data_ptr<float>() + r * k,
                    out.top_ids.data_ptr<int64_t>() + r * k, k);
      const Sums s = AnyRowPass(zr, wr, vocab, target, z_target, top ? &*top : nullptr);
      if (top) top->FillRest();
      const double lse = s.max + std::log(s.exp);
      out.log_normalizer.data_ptr<float>()[r] = static_cast<float>(lse);
      out.entropy.data_ptr<float>()[r] = static_cast<float>(lse - s.exp_z / s.exp);
      out.max_logit.data_ptr<float>()[r] = s.max;
      if (wr != nullptr)
        out.cross_with.data_ptr<float>()[r] = static_cast<float>(s.weight_z - lse * s.weight);
      if (t != nullptr) {
        out.target_logit.data_ptr<float>()[r] =
            target >= 0 ? z_target : std::numeric_limits<float>::quiet_NaN();
        out.rank.data_ptr<int64_t>()[r] = target >= 0 ? s.above + 1 : 0;
      }
    }
  });
  return out;
}

RowStats AtenRowStats(const at::Tensor& logits, const at::Tensor& weights,
                      const at::Tensor& targets, int64_t top_k) {
  RowStats out;
  if (top_k > 0) {
    auto [values, ids] = logits.topk(std::min(top_k, logits.size(-1)), -1);
    out.top_logits = values;
    out.top_ids = ids;
  }
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
                         const at::Tensor& targets, int64_t top_k) {
  if (logits.device().is_cpu()) {
    const at::Tensor w = weights.defined() ? weights.to(at::kFloat).contiguous() : weights;
    const at::Tensor t = targets.defined() ? targets.to(at::kLong).contiguous() : targets;
    const int64_t fused_k = top_k <= kMaxFusedTopK ? top_k : 0;
    RowStats out = logits.scalar_type() == at::kBFloat16
                       ? CpuRowStats<Bf16>(logits.contiguous(), w, t, fused_k)
                       : CpuRowStats<float>(logits.to(at::kFloat).contiguous(), w, t, fused_k);
    if (top_k > fused_k) {
      auto [values, ids] = logits.topk(std::min(top_k, logits.size(-1)), -1);
      out.top_logits = values.to(at::kFloat);
      out.top_ids = ids;
    }
    return out;
  }
  return AtenRowStats(logits.to(at::kFloat), weights.defined() ? weights.to(at::kFloat) : weights,
                      targets, top_k);
}

}  // namespace lensd::engine
