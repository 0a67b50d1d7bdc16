// Training and evaluation specs: tuned-lens's defaults, a JSON round trip (the job store keeps
// specs as JSON), and a message naming the field for each kind of bad value; the layout of
// aggregate metrics.
#include "core/training_spec.h"

#include <functional>

#include "core/eval_spec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd {
namespace {

using ::testing::HasSubstr;

TrainLensSpec Valid() {
  TrainLensSpec s;
  s.lens_name = "tuned";
  s.data.path = "pile/val.jsonl";
  return s;
}

TEST(TrainingSpecTest, DefaultsAreTunedLenssAndRoundTripThroughJson) {
  TrainLensSpec s = Valid();
  EXPECT_EQ(s.num_steps, 250);
  EXPECT_EQ(s.tokens_per_step, 262144);
  EXPECT_EQ(s.seq_len, 2048);
  EXPECT_EQ(s.grad_acc_steps(), 128);  // 128 sequences of 2048, one per micro-batch
  EXPECT_EQ(s.sequences_needed(), 250 * 128);
  EXPECT_EQ(s.precision, "auto");  // bfloat16 autocast on a GPU, as tuned-lens's loop
  nlohmann::json stored = nlohmann::json::parse(s.ToJson());
  stored.erase("precision");  // a spec stored before the field existed ran in float32
  EXPECT_EQ(TrainLensSpec::FromJson(stored.dump())->precision, "float32");
  s.micro_batch = 3;  // 128 / 3 rounds up, as tuned-lens does
  EXPECT_EQ(s.grad_acc_steps(), 43);
  s.token_shift = -1;
  s.data.texts = {};
  s.bias_only = true;
  auto back = TrainLensSpec::FromJson(s.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), s.ToJson());
  EXPECT_EQ(back->token_shift, -1);
}

TEST(TrainingSpecTest, BadValuesNameTheirField) {
  const auto message = [](const std::function<void(TrainLensSpec&)>& edit) {
    TrainLensSpec s = Valid();
    edit(s);
    return std::string(s.Validate().message());
  };
  EXPECT_THAT(message([](auto& s) { s.lens_name = "../x"; }), HasSubstr("lens_name"));
  EXPECT_THAT(message([](auto& s) { s.lens_name = "logit"; }), HasSubstr("lens_name"));
  EXPECT_THAT(message([](auto& s) { s.loss = "mse"; }), HasSubstr("loss"));
  EXPECT_THAT(message([](auto& s) { s.tokens_per_step = 1000; }),
              HasSubstr("tokens_per_step: 1000 must be a positive multiple of seq_len (2048)"));
  EXPECT_THAT(message([](auto& s) { s.momentum = 1; }), HasSubstr("momentum"));
  EXPECT_THAT(message([](auto& s) { s.token_shift = 5000; }), HasSubstr("token_shift"));
  EXPECT_THAT(message([](auto& s) { s.precision = "fp8"; }), HasSubstr("precision"));
  EXPECT_THAT(message([](auto& s) { s.data.texts = {"x"}; }), HasSubstr("data"));
  EXPECT_THAT(std::string(TrainLensSpec::FromJson(R"({"lens_name": 3})").status().message()),
              HasSubstr("lens_name"));
}

TEST(EvalSpecTest, DefaultsAreTunedLensEvalsAndRoundTripThroughJson) {
  EvalLensSpec s;
  EXPECT_EQ(s.lenses, std::vector<std::string>({"logit"}));
  EXPECT_EQ(s.seq_len, 2048);
  EXPECT_EQ(s.batch, 1);
  EXPECT_EQ(s.token_shift, 1);
  EXPECT_EQ(s.seed, 42u);
  EXPECT_FALSE(s.tokens.has_value());
  s.data.path = "pile.jsonl";
  EXPECT_EQ(s.num_batches(10), 10);
  s.batch = 4;
  EXPECT_EQ(s.num_batches(10), 3);  // the last one short
  s.tokens = 2 * 4 * 2048 + 5;      // tuned-lens: tokens // (batch x seq_len) batches
  EXPECT_EQ(s.num_batches(10), 2);
  s.lenses = {"logit", "tuned-1"};
  auto back = EvalLensSpec::FromJson(s.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), s.ToJson());
}

TEST(EvalSpecTest, BadValuesNameTheirField) {
  const auto message = [](const std::function<void(EvalLensSpec&)>& edit) {
    EvalLensSpec s;
    s.data.texts = {"In the beginning"};
    edit(s);
    return std::string(s.Validate().message());
  };
  EXPECT_EQ(message([](auto&) {}), "");
  EXPECT_THAT(message([](auto& s) { s.lenses = {}; }), HasSubstr("lenses"));
  EXPECT_THAT(message([](auto& s) { s.lenses = {"logit", "../x"}; }), HasSubstr("lenses"));
  EXPECT_THAT(message([](auto& s) { s.lenses = {"a", "a"}; }), HasSubstr("named twice"));
  EXPECT_THAT(message([](auto& s) { s.batch = 0; }), HasSubstr("batch"));
  EXPECT_THAT(message([](auto& s) { s.tokens = 100; }), HasSubstr("tokens"));
  EXPECT_THAT(message([](auto& s) { s.token_shift = -2048; }), HasSubstr("token_shift"));
  EXPECT_THAT(message([](auto& s) { s.data.path = "x.txt"; }), HasSubstr("data"));
  EXPECT_THAT(std::string(EvalLensSpec::FromJson(R"({"lenses": "logit"})").status().message()),
              HasSubstr("lenses"));
}

TEST(EvalSpecTest, AggregateMetricsHaveTunedLenssShapeAndScale) {
  LensMetrics m;
  m.lenses["logit"] = {{"ce", {2.0, 1.0}}, {"entropy", {3.0, 2.0}}, {"kl", {1.5, 0.5}}};
  m.baseline_ce = 0.75;
  m.baseline_entropy = 1.25;
  const nlohmann::json j = nlohmann::json::parse(AggregateMetricsJson(m, 2.0));
  EXPECT_EQ(j, nlohmann::json::parse(R"({
    "logit": {"ce": {"layer_0": 4.0, "layer_1": 2.0}, "entropy": {"layer_0": 6.0, "layer_1": 4.0},
              "kl": {"layer_0": 3.0, "layer_1": 1.0}},
    "baseline": {"ce": {"final": 1.5}, "entropy": {"final": 2.5}}})"));
}

}  // namespace
}  // namespace lensd
