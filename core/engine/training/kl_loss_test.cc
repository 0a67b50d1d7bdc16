// The fused KL loss and gradient against autograd running tuned-lens's expression,
// (p * (log p - log_softmax(z))).sum(-1).mean() * scale, on float32 and bfloat16 logits (where
// PyTorch's CPU log_softmax rounds to bfloat16), on vocabularies that are and are not multiples
// of the vector width, with peaked and flat rows.
#include "core/engine/training/kl_loss.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

struct Autograd {
  double loss;
  at::Tensor grad;
};

Autograd AutogradKl(const at::Tensor& z, const at::Tensor& log_p, double scale) {
  c10::AutoGradMode grad_mode(true);
  const at::Tensor leaf = z.detach().clone().requires_grad_(true);
  at::Tensor loss = (log_p.exp() * (log_p - at::log_softmax(leaf, -1))).sum(-1).mean();
  const double value = loss.item<double>();
  (loss * scale).backward();
  return {value, leaf.grad()};
}

// Rows of logits with spread `spread` (larger: more peaked) and a final distribution.
std::pair<at::Tensor, at::Tensor> Rows(int64_t rows, int64_t vocab, double spread, int seed) {
  at::manual_seed(seed);
  const at::Tensor z = at::randn({rows, vocab}) * spread;
  const at::Tensor log_p = at::log_softmax(z + at::randn({rows, vocab}), -1);
  return {z, log_p};
}

// Losses within 1e-6 relative, gradients within 1e-5 of the largest (measured: 6e-7, most rows
// bit-identical).
void ExpectMatchesAutograd(const at::Tensor& z, const at::Tensor& log_p, double scale) {
  const Autograd want = AutogradKl(z, log_p, scale);
  const KlLoss got = FusedKlLoss(z, PrepareKlTarget(log_p, log_p.exp(), scale, z.scalar_type()));
  ASSERT_EQ(got.grad.scalar_type(), z.scalar_type());
  EXPECT_NEAR(got.loss, want.loss, 1e-6 * std::max(1.0, std::abs(want.loss)));
  const at::Tensor diff = (got.grad.to(at::kFloat) - want.grad.to(at::kFloat)).abs();
  const double largest = want.grad.to(at::kFloat).abs().max().item<double>();
  EXPECT_LE(diff.max().item<double>(), 1e-5 * largest)
      << "mean difference " << diff.mean().item<double>();
}

TEST(FusedKlLoss, Float32MatchesAutograd) {
  for (const int64_t vocab : {1003, 4096}) {
    for (const double spread : {1.0, 8.0}) {
      const auto [z, log_p] = Rows(5, vocab, spread, 1);
      ExpectMatchesAutograd(z, log_p, 0.5);
    }
  }
}

// Under bfloat16 the log-probabilities are rounded where ATen rounds them, so the losses and
// gradients agree as closely as in float32 (a float32 log-softmax would differ by up to the
// bfloat16 spacing of the normaliser's log, 0.03 nats at a vocabulary of 50k).
TEST(FusedKlLoss, Bfloat16RoundsWhereAtenRounds) {
  for (const int64_t vocab : {1003, 50257}) {
    for (const double spread : {1.0, 3.0, 8.0}) {
      const auto [z, log_p] = Rows(6, vocab, spread, 2);
      ExpectMatchesAutograd(z.to(at::kBFloat16), log_p, 0.25);
    }
  }
}

TEST(FusedKlLoss, Bfloat16DiffersFromFloat32Arithmetic) {
  // The check above can fail: a float32 log-softmax of the same bfloat16 logits gives another
  // loss (what the kernel must not compute).
  const auto [z, log_p] = Rows(6, 50257, 3.0, 3);
  const at::Tensor z16 = z.to(at::kBFloat16);
  const KlLoss got = FusedKlLoss(z16, PrepareKlTarget(log_p, log_p.exp(), 1.0, at::kBFloat16));
  const double float32 = AutogradKl(z16.to(at::kFloat), log_p, 1.0).loss;
  EXPECT_GT(std::abs(got.loss - float32), 1e-4);
}

TEST(FusedKlLoss, AppliesToCpuFloat32AndBfloat16Only) {
  EXPECT_TRUE(FusedKlLossApplies(at::zeros({2, 3})));
  EXPECT_TRUE(FusedKlLossApplies(at::zeros({2, 3}, at::kBFloat16)));
  EXPECT_FALSE(FusedKlLossApplies(at::zeros({2, 3}, at::kHalf)));
  EXPECT_FALSE(FusedKlLossApplies(at::zeros({2, 3}, at::kDouble)));
}

}  // namespace
}  // namespace lensd::engine
