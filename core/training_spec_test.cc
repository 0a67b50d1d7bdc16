// Training specs: tuned-lens's defaults, a JSON round trip (the job store keeps specs as JSON),
// and a message naming the field for each kind of bad value.
#include "core/training_spec.h"

#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

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
  EXPECT_THAT(message([](auto& s) { s.data.texts = {"x"}; }), HasSubstr("data"));
  EXPECT_THAT(std::string(TrainLensSpec::FromJson(R"({"lens_name": 3})").status().message()),
              HasSubstr("lens_name"));
}

}  // namespace
}  // namespace lensd
