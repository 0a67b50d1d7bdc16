// The fused CPU statistics kernel against plain ATen formulas, on vocabularies that are and are
// not multiples of the vector width, with masked (lowest) and -inf logits, ties and no targets.
#include "core/engine/lens/row_stats.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <utility>

#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

void ExpectMatchesAten(const at::Tensor& z, const at::Tensor& w, const at::Tensor& t) {
  const RowStats got = ComputeRowStats(z, w, t);
  const at::Tensor lse = at::logsumexp(z, -1);
  const at::Tensor logp = z - lse.unsqueeze(-1);
  const at::Tensor p = logp.exp();
  const at::Tensor entropy = -(p * logp.nan_to_num(0, 0, 0)).sum(-1);  // 0 * -inf counts as 0
  EXPECT_LE((got.log_normalizer - lse).abs().max().item<double>(), 1e-5);
  EXPECT_LE((got.entropy - entropy).abs().max().item<double>(), 1e-4);
  EXPECT_TRUE(at::equal(got.max_logit, std::get<0>(z.max(-1))));
  const at::Tensor cross = (w * z).sum(-1) - lse * w.sum(-1);
  const at::Tensor finite = cross.isfinite();
  EXPECT_TRUE(at::equal(got.cross_with.isfinite(), finite));  // -inf logits: -inf in both
  EXPECT_LE(((got.cross_with - cross).abs() / cross.abs().clamp_min(1))
                .masked_select(finite)
                .max()
                .item<double>(),
            1e-5);
  for (int64_t r = 0; r < z.size(0); ++r) {
    const int64_t target = t[r].item<int64_t>();
    if (target < 0) {
      EXPECT_TRUE(std::isnan(got.target_logit[r].item<float>()));
      EXPECT_EQ(got.rank[r].item<int64_t>(), 0);
      continue;
    }
    EXPECT_EQ(got.target_logit[r].item<float>(), z[r][target].item<float>());
    EXPECT_EQ(got.rank[r].item<int64_t>(), (z[r] > z[r][target]).sum().item<int64_t>() + 1);
  }
}

TEST(RowStats, MatchesAtenOnEveryVocabularyShape) {
  at::manual_seed(0);
  for (const int64_t vocab : {1, 7, 8, 9, 63, 2049, 50257}) {
    const at::Tensor z = at::randn({5, vocab}) * 4;
    const at::Tensor w = at::softmax(at::randn({5, vocab}), -1);
    const at::Tensor t = at::tensor({0L, vocab - 1, -1L, vocab / 2, 0L});
    ExpectMatchesAten(z, w, t);
  }
}

TEST(RowStats, MaskedAndInfiniteLogitsContributeNothing) {
  at::manual_seed(1);
  at::Tensor z = at::randn({3, 100});
  z.index_put_({0, at::indexing::Slice(0, 50)}, std::numeric_limits<float>::lowest());
  z.index_put_({1, at::indexing::Slice(10, 20)}, -std::numeric_limits<float>::infinity());
  z.index_put_({2}, 1.5f);  // all tied
  const at::Tensor w = at::softmax(at::randn({3, 100}), -1);
  ExpectMatchesAten(z, w, at::tensor({60L, 3L, 7L}));
  const RowStats tied = ComputeRowStats(z, at::Tensor(), at::tensor({60L, 3L, 7L}));
  EXPECT_EQ(tied.rank[2].item<int64_t>(), 1);  // ties do not rank above the target
  EXPECT_NEAR(tied.entropy[2].item<float>(), std::log(100.0), 1e-5);
}

TEST(RowStats, TopKMatchesAtenTopKAndBreaksTiesByTheLowerId) {
  at::manual_seed(2);
  for (const int64_t vocab : {3, 9, 50257}) {
    const at::Tensor z = at::randn({4, vocab}) * 3;
    for (const int64_t k : {1, 5, 64, 65}) {
      const RowStats got = ComputeRowStats(z, at::Tensor(), at::Tensor(), k);
      const auto [values, ids] = z.topk(std::min(k, vocab), -1);
      EXPECT_TRUE(at::equal(got.top_logits, values)) << vocab << " " << k;
      EXPECT_TRUE(at::equal(got.top_ids, ids)) << vocab << " " << k;
    }
  }
  const at::Tensor tied =
      at::tensor({1.0f, 3.0f, 3.0f, 2.0f, 3.0f, -1.0f, 2.0f, 0.0f, 2.0f}).view({1, -1});
  const RowStats got = ComputeRowStats(tied, at::Tensor(), at::Tensor(), 5);
  EXPECT_TRUE(at::equal(got.top_ids, at::tensor({1L, 2L, 4L, 3L, 6L}).view({1, -1})));
  // Fewer finite logits than k: the -inf ones fill the places, as at::topk does.
  at::Tensor sparse = at::full({1, 20}, -std::numeric_limits<float>::infinity());
  sparse.index_put_({0, 7}, 1.0f);
  const RowStats few = ComputeRowStats(sparse, at::Tensor(), at::Tensor(), 3);
  EXPECT_EQ(few.top_ids[0][0].item<int64_t>(), 7);
  EXPECT_TRUE(std::isinf(few.top_logits[0][2].item<float>()));
}

TEST(RowStats, BFloat16LogitsAreReadAsTheirFloat32Values) {
  at::manual_seed(3);
  const at::Tensor z = (at::randn({6, 50257}) * 4).to(at::kBFloat16);
  const at::Tensor w = at::softmax(at::randn({6, 50257}), -1);
  const at::Tensor t = at::tensor({0L, 50256L, -1L, 17L, 3L, 9L});
  const RowStats narrow = ComputeRowStats(z, w, t, 5);
  const RowStats wide = ComputeRowStats(z.to(at::kFloat), w, t, 5);
  for (const auto& [a, b] : {std::pair{narrow.log_normalizer, wide.log_normalizer},
                             {narrow.entropy, wide.entropy},
                             {narrow.cross_with, wide.cross_with},
                             {narrow.max_logit, wide.max_logit},
                             {narrow.top_logits, wide.top_logits}}) {
    EXPECT_TRUE(at::equal(a, b));
  }
  EXPECT_TRUE(at::equal(narrow.rank, wide.rank));
  EXPECT_TRUE(at::equal(narrow.top_ids, wide.top_ids));
  EXPECT_TRUE(at::allclose(narrow.target_logit, wide.target_logit, 0, 0, /*equal_nan=*/true));
}

}  // namespace
}  // namespace lensd::engine
