// tuned-lens's KL lens loss and its gradient, fused for the CPU. The loop computes
//   loss = mean over rows of sum_v p_v (log p_v - log_softmax(z)_v)
// through autograd: six passes over [rows x vocab] forward and as many backward, each with its
// own temporaries. Here what depends on the final distribution p alone (sum p log p, the sum of
// the gradient autograd hands log_softmax's backward) is computed once per micro-batch, and each
// layer's row of logits is read three times (its maximum; its normaliser; the loss and the
// gradient) with nothing but the gradient written.
//
// Under bfloat16 autocast PyTorch's CPU log_softmax keeps the normaliser, its log and the
// log-probabilities in bfloat16, the loss is float32, and the gradient reaches log_softmax's
// backward in bfloat16; the kernel rounds at the same points, so its loss and gradient are what
// autograd gives up to the order of float32 sums (kl_loss_test: losses within 1e-6 relative,
// gradients within 1e-5 of the largest). Pure functions; thread-safe (parallel over rows with
// ATen's thread pool); AVX-512, AVX2 or baseline x86-64 code chosen at run time.
#ifndef LENSD_CORE_ENGINE_TRAINING_KL_LOSS_H_
#define LENSD_CORE_ENGINE_TRAINING_KL_LOSS_H_

#include <ATen/core/Tensor.h>

#include <vector>

namespace lensd::engine {

// Whether FusedKlLoss takes these logits: a CPU tensor of float32 or bfloat16.
bool FusedKlLossApplies(const at::Tensor& logits);

// The final layer's distribution, prepared for every layer's loss of one micro-batch.
struct KlTarget {
  at::Tensor p;                 // [rows, vocab] float32, contiguous
  std::vector<double> p_log_p;  // per row, sum_v p_v log p_v
  std::vector<float> grad_sum;  // per row, sum_v of the gradient reaching log_softmax
  float c = 0;                  // scale / rows, as autograd's float32 chain computes it
  at::ScalarType logits_dtype = at::kFloat;
};

// `log_target` log p and `target` p = exp(log p), [rows, vocab] float32 on the CPU; gradients
// will be of `scale` x the loss, for logits of `logits_dtype` (float32 or bfloat16).
KlTarget PrepareKlTarget(const at::Tensor& log_target, const at::Tensor& target, double scale,
                         at::ScalarType logits_dtype);

struct KlLoss {
  double loss = 0;  // the mean over rows, nats
  at::Tensor grad;  // d(scale * loss) / d logits, [rows, vocab] in the logits' dtype
};

// `logits` z [rows, vocab] of the target's rows and logits_dtype, on the CPU. The gradient is as
// autograd gives it for `(loss * scale).backward()`.
KlLoss FusedKlLoss(const at::Tensor& logits, const KlTarget& target);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_TRAINING_KL_LOSS_H_
