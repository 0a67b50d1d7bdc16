// Lens evaluation against tuned-lens's own eval loop (tests/parity/eval_reference.py runs
// Eval.execute on the same checkpoint, tuned lens and batches): every entry of its
// aggregate_metrics.json — ce, entropy and kl per layer for the logit and the tuned lens, and the
// baseline — within 1e-5 relative (float32 batch means on both sides, averaged in float32 there
// and in double here; measured 1.5e-7).
#include <ATen/ATen.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/engine/lens/lens.h"
#include "core/engine/lens/lens_evaluation.h"
#include "core/engine/models/model_loader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

TEST(EvalParityTest, AggregateMetricsMatchTunedLensEval) {
  const std::string dir = std::string(LENSD_TEST_BINARY_DIR) + "/parity/evaluation";
  const nlohmann::json c = nlohmann::json::parse(std::ifstream(dir + "/case.json"));
  const nlohmann::json expected =
      nlohmann::json::parse(std::ifstream(dir + "/eval/aggregate_metrics.json"));
  auto model = LoadModel(dir + "/model", {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto tuned = TunedLens::Load(dir + "/lens", **model, "tuned");
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  const LogitLens logit;
  const int64_t batch = c["batch"], seq_len = c["seq_len"], batches = c["batches"];
  std::vector<uint16_t> raw(static_cast<size_t>(batch * batches * seq_len));
  std::ifstream(dir + "/tokens.bin", std::ios::binary)
      .read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size() * 2));
  const at::Tensor tokens =
      at::tensor(std::vector<int64_t>(raw.begin(), raw.end()), at::kLong).view({-1, seq_len});
  auto evaluation = EvaluateLenses(**model, {{"logit", &logit}, {"tuned", tuned->get()}}, tokens,
                                   batch, 1, nullptr);
  ASSERT_TRUE(evaluation.ok()) << evaluation.status();
  EXPECT_EQ(evaluation->batches, batches);
  const nlohmann::json ours =
      nlohmann::json::parse(AggregateMetricsJson(*evaluation, c["nats_to_bpb"].get<double>()));
  int compared = 0;
  double worst = 0;
  for (const auto& [lens, metrics] : expected.items()) {
    for (const auto& [metric, layers] : metrics.items()) {
      for (const auto& [layer, value] : layers.items()) {
        ASSERT_TRUE(ours.contains(lens) && ours[lens].contains(metric) &&
                    ours[lens][metric].contains(layer))
            << lens << "/" << metric << "/" << layer;
        const double want = value.get<double>();
        worst = std::max(worst,
                         std::abs(ours[lens][metric][layer].get<double>() - want) / std::abs(want));
        EXPECT_NEAR(ours[lens][metric][layer].get<double>(), want, 1e-5 * std::abs(want) + 1e-7)
            << lens << "/" << metric << "/" << layer;
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 2 * 3 * 4 + 2);
  std::printf("%d metrics, worst relative difference %.2e\n", compared, worst);
}

}  // namespace
}  // namespace lensd::engine
