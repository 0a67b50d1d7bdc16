// Lens files, decoding and generation on a tiny GPT-2: malformed lenses and requests give a
// Status naming the file, key or field; decoding and generation behave as documented. Numbers
// against tuned-lens are in tests/parity/lens_parity_test.cc.
#include "core/engine/lens/lens.h"

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>

#include "core/engine/lens/decode.h"
#include "core/engine/lens/decode_contract.h"
#include "core/engine/lens/generate.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Fixture(const std::string& name) {
  return std::string(LENSD_TEST_SOURCE_DIR) + "/tests/fixtures/lenses/" + name;
}

class LensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::TempDir("model");
    testing::WriteTinyGpt2(dir, at::kFloat);
    auto model = LoadModel(dir, {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
  }

  // A copy of a fixture lens folder that a test may damage.
  std::string Copy(const std::string& fixture) {
    std::string dir = testing::TempDir(fixture);
    fs::copy(Fixture(fixture), dir,
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    return dir;
  }

  absl::Status LoadStatus(const std::string& dir) {
    return TunedLens::Load(dir, *model_, "lens").status();
  }

  std::unique_ptr<CausalLm> model_;
};

TEST_F(LensTest, ParamsPtSafetensorsAndFloat16FilesLoadTheSameTranslators) {
  auto pt = TunedLens::Load(Fixture("tiny"), *model_, "pt");
  auto st = TunedLens::Load(Fixture("tiny_safetensors"), *model_, "st");
  auto half = TunedLens::Load(Fixture("tiny_fp16"), *model_, "half");
  ASSERT_TRUE(pt.ok() && st.ok() && half.ok()) << pt.status() << st.status() << half.status();
  EXPECT_TRUE(at::equal((*pt)->weights(), (*st)->weights()));
  EXPECT_TRUE(at::equal((*pt)->biases(), (*st)->biases()));
  EXPECT_TRUE(at::equal((*half)->weights(), (*pt)->weights().to(at::kHalf).to(at::kFloat)));
  EXPECT_EQ((*pt)->config().d_model, 8);
  EXPECT_TRUE((*pt)->config().unembed_hash.has_value());
}

TEST_F(LensTest, CorruptParamsPtIsRefusedWithTheFileNamed) {
  const std::string dir = Copy("tiny");
  const std::string params = dir + "/params.pt";
  const std::string bytes = testing::ReadText(params);
  std::string flipped = bytes;
  flipped[flipped.find("data/0") + 200] ^= 0x55;  // inside the first storage
  testing::WriteText(params, flipped);
  EXPECT_THAT(LoadStatus(dir).message(), AllOf(HasSubstr("params.pt"), HasSubstr("CRC-32")));
  testing::WriteText(params, bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(LoadStatus(dir).message(), AllOf(HasSubstr("params.pt"), HasSubstr("zip")));
  testing::WriteText(params, std::string("\x80\x02}q\x00.", 6));  // a pre-1.6 pickle
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("legacy"));
  testing::WriteText(params, "");
  EXPECT_EQ(LoadStatus(dir).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LensTest, MissingUnexpectedAndMisshapenKeysAreNamed) {
  const std::string dir = Copy("tiny_safetensors");
  const auto write = [&](const std::map<std::string, at::Tensor>& params) {
    testing::WriteSafetensors(dir + "/params.safetensors", params);
    return LoadStatus(dir);
  };
  EXPECT_THAT(write({{"0.weight", at::zeros({8, 8})}}).message(),
              AllOf(HasSubstr("params.safetensors"), HasSubstr("\"0.bias\" is missing")));
  EXPECT_THAT(write({{"0.weight", at::zeros({4, 8})}, {"0.bias", at::zeros({8})}}).message(),
              AllOf(HasSubstr("\"0.weight\" has shape [4, 8]"), HasSubstr("[8, 8]")));
  EXPECT_THAT(write({{"0.weight", at::zeros({8, 8})},
                     {"0.bias", at::zeros({8})},
                     {"1.weight", at::zeros({8, 8})}})
                  .message(),
              HasSubstr("unexpected key \"1.weight\""));
  EXPECT_TRUE(write({{"0.weight", at::zeros({8, 8})}, {"0.bias", at::zeros({8})}}).ok());
}

TEST_F(LensTest, ConfigMismatchNamesBothSizes) {
  const std::string dir = Copy("tiny");
  nlohmann::json config = nlohmann::json::parse(testing::ReadText(dir + "/config.json"));
  config["d_model"] = 16;
  testing::WriteText(dir + "/config.json", config.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              AllOf(HasSubstr("d_model 16 and 1 layers"), HasSubstr("d_model 8 and 1 layers")));
  config["d_model"] = 8;
  config["num_hidden_layers"] = 12;
  testing::WriteText(dir + "/config.json", config.dump());
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("12 layers but the model has d_model 8 and 1"));
  config.erase("d_model");
  testing::WriteText(dir + "/config.json", config.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              AllOf(HasSubstr("config.json"), HasSubstr("d_model is missing")));
  EXPECT_EQ(LoadStatus(testing::TempDir("empty")).code(), absl::StatusCode::kNotFound);
}

TEST_F(LensTest, DecodeValidatesEveryField) {
  const LogitLens lens;
  const auto status = [&](const std::function<void(DecodeRequest&)>& edit) {
    DecodeRequest r;
    r.tokens = at::tensor({1, 2, 3}, at::kLong).view({1, 3});
    edit(r);
    return Decode(*model_, lens, r).status();
  };
  EXPECT_TRUE(status([](DecodeRequest&) {}).ok());
  EXPECT_THAT(status([](DecodeRequest& r) { r.layers = {1}; }).message(),
              HasSubstr("layers: layer 1 out of range: model gpt2 has lens layers 0..0"));
  EXPECT_THAT(status([](DecodeRequest& r) { r.positions = {3}; }).message(),
              HasSubstr("positions: position 3 out of range"));
  EXPECT_THAT(status([](DecodeRequest& r) { r.top_k = 17; }).message(),
              HasSubstr("top_k: 17 out of range 0..16"));
  EXPECT_THAT(status([](DecodeRequest& r) { r.statistics |= kLogProbDiff; }).message(),
              HasSubstr("anti_targets: the log_prob_diff statistic needs them"));
  EXPECT_THAT(status([](DecodeRequest& r) {
                r.targets = at::full({1, 3}, 99, at::kLong);
              }).message(),
              HasSubstr("targets: token id 99 out of range 0..15 (or -1 for none)"));
  EXPECT_THAT(status([](DecodeRequest& r) {
                r.targets = at::full({1, 2}, 1, at::kLong);
              }).message(),
              HasSubstr("targets: needs the shape of tokens"));
}

// The default targets are the contract's: the next token, then the first EOS id, each row to
// its own last real token (padding gets -1), whether a row is decoded alone or batched.
TEST_F(LensTest, DefaultTargetsAreTheNextTokenThenEos) {
  EXPECT_EQ(DefaultTargets({4, 5, 6}, {2, 9}), (std::vector<int64_t>{5, 6, 2}));
  EXPECT_EQ(DefaultTargets({4}, {}), (std::vector<int64_t>{-1}));
  const LogitLens lens;
  DecodeRequest r;
  r.tokens = at::tensor({1, 2, 3, 4, 5, 0}, at::kLong).view({2, 3});
  r.attention_mask = at::tensor({1, 1, 1, 1, 1, 0}, at::kLong).view({2, 3});
  const absl::StatusOr<DecodeResult> out = Decode(*model_, lens, r);
  ASSERT_TRUE(out.ok()) << out.status();
  // Row 1 has two real tokens: its first position is scored against token 5 like row 0's
  // against 2 (finite), its padding against none (NaN); the output row (last) is read.
  const at::Tensor ce = out->cross_entropy.select(1, -1);
  EXPECT_TRUE(std::isfinite(ce[0][0].item<float>()));
  EXPECT_TRUE(std::isfinite(ce[1][0].item<float>()));
  EXPECT_TRUE(std::isnan(ce[1][2].item<float>()));
  EXPECT_EQ(std::isfinite(ce[1][1].item<float>()), !model_->config().eos_token_ids.empty());
}

TEST_F(LensTest, DecodeStreamsEveryRowAndKeepsShapes) {
  const LogitLens lens;
  DecodeRequest r;
  r.tokens = at::tensor({1, 2, 3, 4}, at::kLong).view({2, 2});
  r.positions = {1};
  std::vector<int64_t> seen;
  auto out = Decode(*model_, lens, r, [&](int64_t row, const at::Tensor& logp) {
    EXPECT_EQ(logp.sizes(), (std::vector<int64_t>{2, 1, 16}));
    EXPECT_NEAR(logp.exp().sum(-1).max().item<double>(), 1.0, 1e-5);
    seen.push_back(row);
    return absl::OkStatus();
  });
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1}));  // the lens row, then the output row (L = 1)
  EXPECT_EQ(out->rows, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(out->top_ids.sizes(), (std::vector<int64_t>{2, 2, 1, 5}));
  EXPECT_EQ(out->forward_kl[0][1][0].item<float>(), 0.0f);  // the output row against itself
  // The default target of the last position is the first EOS id; the tiny config has none.
  EXPECT_TRUE(std::isnan(out->cross_entropy[0][0][0].item<float>()));
  EXPECT_NEAR(NatsToBitsPerByte(29, 100), 0.29 / std::log(2.0), 1e-12);
}

TEST_F(LensTest, GenerateValidatesEveryField) {
  const LogitLens lens;
  const auto status = [&](const std::function<void(GenerateRequest&)>& edit) {
    GenerateRequest r;
    r.tokens = at::tensor({1, 2}, at::kLong).view({1, 2});
    r.greedy = true;
    r.max_new_tokens = 4;
    edit(r);
    return Generate(*model_, lens, r).status();
  };
  EXPECT_TRUE(status([](GenerateRequest&) {}).ok());
  EXPECT_THAT(status([](GenerateRequest& r) { r.layer = 2; }).message(),
              HasSubstr("layer 2 out of range"));
  EXPECT_THAT(status([](GenerateRequest& r) { r.greedy = false, r.temperature = 0; }).message(),
              HasSubstr("temperature must be > 0"));
  EXPECT_THAT(status([](GenerateRequest& r) { r.top_p = 0; }).message(), HasSubstr("top_p"));
  EXPECT_THAT(status([](GenerateRequest& r) { r.stop_tokens = {16}; }).message(),
              HasSubstr("stop token 16 out of range"));
  EXPECT_THAT(status([](GenerateRequest& r) { r.max_new_tokens = -1; }).message(),
              HasSubstr("max_new_tokens"));
  EXPECT_THAT(
      status([](GenerateRequest& r) { r.max_new_tokens = 7; }).message(),
      HasSubstr("a prompt of 2 tokens plus max_new_tokens 7 exceeds the model's context of 8"));
}

TEST_F(LensTest, BatchedGenerationEqualsEachPromptAlone) {
  auto lens = TunedLens::Load(Fixture("tiny"), *model_, "tiny");
  ASSERT_TRUE(lens.ok());
  GenerateRequest r;
  r.tokens = at::tensor({3, 1, 4, 1, 5, 9, 0, 0}, at::kLong).view({2, 4});
  r.attention_mask = at::tensor({1, 1, 1, 1, 1, 1, 0, 0}, at::kLong).view({2, 4});
  r.greedy = true;
  r.max_new_tokens = 3;
  for (const int64_t layer : {0, 1}) {
    r.layer = layer;
    auto both = Generate(*model_, **lens, r);
    ASSERT_TRUE(both.ok()) << both.status();
    for (int64_t row = 0; row < 2; ++row) {
      GenerateRequest one = r;
      const int64_t n = row == 0 ? 4 : 2;
      one.tokens = r.tokens[row].narrow(0, 0, n).view({1, n});
      one.attention_mask = at::Tensor();
      auto alone = Generate(*model_, **lens, one);
      ASSERT_TRUE(alone.ok());
      EXPECT_EQ(both->tokens[static_cast<size_t>(row)], alone->tokens[0]) << "layer " << layer;
    }
  }
}

TEST_F(LensTest, SamplingIsReproducibleAndStopsPerRow) {
  const LogitLens lens;
  GenerateRequest r;
  r.tokens = at::tensor({1, 2, 3, 4}, at::kLong).view({2, 2});
  r.layer = 1;
  r.max_new_tokens = 6;
  r.seed = 7;
  auto a = Generate(*model_, lens, r);
  auto b = Generate(*model_, lens, r);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  r.top_k = 1;  // sampling among one token is greedy
  auto top1 = Generate(*model_, lens, r);
  r.greedy = true;
  auto greedy = Generate(*model_, lens, r);
  ASSERT_TRUE(top1.ok() && greedy.ok());
  EXPECT_EQ(top1->tokens, greedy->tokens);
  // A stop token ends the row that emits it, with reason "stop".
  r.stop_tokens = {greedy->tokens[0][0]};
  auto stopped = Generate(*model_, lens, r);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->tokens[0].size(), 1u);
  EXPECT_EQ(stopped->finish_reasons[0], "stop");
  int steps = 0;
  auto cancelled = Generate(*model_, lens, r, [&](int64_t, const std::vector<int64_t>&) {
    return ++steps == 2 ? absl::CancelledError("client went away") : absl::OkStatus();
  });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(steps, 2);
}

}  // namespace
}  // namespace lensd::engine
