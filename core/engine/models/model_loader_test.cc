// Loading model folders: malformed files and configs give a Status naming the file and the
// tensor or field, never a crash; weights convert between dtypes; forward validates its input.
#include "core/engine/models/model_loader.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "core/engine/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::ReadText;
using testing::TempDir;
using testing::WriteSafetensors;
using testing::WriteText;
using testing::WriteTinyGpt2;

absl::Status LoadStatus(const std::string& dir, const LoadOptions& options = {}) {
  return LoadModel(dir, options).status();
}

void EditConfig(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config = nlohmann::json::parse(ReadText(dir + "/config.json"));
  edit(config);
  WriteText(dir + "/config.json", config.dump());
}

TEST(ModelLoader, LoadsTinyGpt2AndRunsForward) {
  const std::string dir = TempDir("ok");
  WriteTinyGpt2(dir, at::kFloat);
  auto model = LoadModel(dir, {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto out = (*model)->Forward({at::tensor({1, 2, 3}, at::kLong).view({1, 3})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->logits.sizes(), (std::vector<int64_t>{1, 3, 16}));
}

TEST(ModelLoader, ConvertsHalfAndBfloat16FilesToFloat32) {
  for (const at::ScalarType stored : {at::kHalf, at::kBFloat16}) {
    const std::string dir = TempDir(c10::toString(stored));
    const auto written = WriteTinyGpt2(dir, stored);
    auto model = LoadModel(dir, {"float32", "cpu"});
    ASSERT_TRUE(model.ok()) << model.status();
    // Same weights upcast in Python order give the same embedding lookup.
    Hooks hooks(1);
    hooks.Capture({HookKind::kEmbed, -1});
    ASSERT_TRUE((*model)->Forward({at::tensor({5}, at::kLong).view({1, 1})}, &hooks).ok());
    const at::Tensor expected = written.at("transformer.wte.weight")[5].to(at::kFloat);
    EXPECT_TRUE(at::equal(hooks.Captured({HookKind::kEmbed, -1})[0][0], expected));
  }
}

TEST(ModelLoader, MissingFolderFilesAreNotFound) {
  const std::string dir = TempDir("empty");
  EXPECT_EQ(LoadStatus(dir).code(), absl::StatusCode::kNotFound);
  WriteTinyGpt2(dir, at::kFloat);
  std::filesystem::remove(dir + "/model.safetensors");
  const absl::Status status = LoadStatus(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("model.safetensors"));
}

TEST(ModelLoader, TruncatedWeightsNameFileAndTensor) {
  const std::string dir = TempDir("truncated");
  WriteTinyGpt2(dir, at::kFloat);
  const std::string bytes = ReadText(dir + "/model.safetensors");
  WriteText(dir + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  const absl::Status status = LoadStatus(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), AllOf(HasSubstr("model.safetensors"), HasSubstr("tensor \""),
                                      HasSubstr("truncated")));
}

TEST(ModelLoader, CorruptHeaderNamesFile) {
  const std::string dir = TempDir("corrupt");
  WriteTinyGpt2(dir, at::kFloat);
  std::string bytes = ReadText(dir + "/model.safetensors");
  bytes[8] = '#';  // the opening brace of the header
  WriteText(dir + "/model.safetensors", bytes);
  EXPECT_THAT(LoadStatus(dir).message(), AllOf(HasSubstr("model.safetensors"), HasSubstr("JSON")));
}

TEST(ModelLoader, WrongDtypeShapeAndMissingTensorNameTheTensor) {
  const std::string dir = TempDir("tensors");
  auto tensors = WriteTinyGpt2(dir, at::kFloat);
  auto with = [&](const std::string& name, const at::Tensor& value) {
    auto edited = tensors;
    if (value.defined()) {
      edited[name] = value;
    } else {
      edited.erase(name);
    }
    WriteSafetensors(dir + "/model.safetensors", edited);
    return LoadStatus(dir);
  };
  EXPECT_THAT(with("transformer.ln_f.bias", at::zeros({8}, at::kLong)).message(),
              AllOf(HasSubstr("transformer.ln_f.bias"), HasSubstr("I64")));
  EXPECT_THAT(with("transformer.h.0.attn.c_attn.weight", at::zeros({8, 8})).message(),
              AllOf(HasSubstr("transformer.h.0.attn.c_attn.weight"), HasSubstr("[8, 8]"),
                    HasSubstr("[8, 24]")));
  EXPECT_THAT(with("transformer.h.0.mlp.c_fc.bias", at::Tensor()).message(),
              AllOf(HasSubstr("transformer.h.0.mlp.c_fc.bias"), HasSubstr("missing")));
}

TEST(ModelLoader, ConfigErrorsNameTheField) {
  const std::string dir = TempDir("config");
  WriteTinyGpt2(dir, at::kFloat);
  EditConfig(dir, [](nlohmann::json& c) { c.erase("n_embd"); });
  EXPECT_THAT(LoadStatus(dir).message(),
              AllOf(HasSubstr("config.json"), HasSubstr("n_embd is missing")));
  EditConfig(dir, [](nlohmann::json& c) { c["n_embd"] = "eight"; });
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("n_embd must be an integer"));
  EditConfig(dir, [](nlohmann::json& c) {
    c["n_embd"] = 8;
    c["model_type"] = "bert";
  });
  EXPECT_THAT(LoadStatus(dir).message(),
              AllOf(HasSubstr("\"bert\" is not supported"), HasSubstr("gpt2"), HasSubstr("llama")));
  WriteText(dir + "/config.json", "{\"model_type\": ");
  EXPECT_THAT(LoadStatus(dir).message(), AllOf(HasSubstr("config.json"), HasSubstr("JSON")));
}

TEST(ModelLoader, UnimplementedOptionsOfServedFamiliesAreRefusedByName) {
  const std::string dir = TempDir("options");
  WriteTinyGpt2(dir, at::kFloat);
  const nlohmann::json opt = {
      {"model_type", "opt"},          {"vocab_size", 16},         {"hidden_size", 8},
      {"num_hidden_layers", 2},       {"num_attention_heads", 2}, {"ffn_dim", 16},
      {"do_layer_norm_before", false}};
  WriteText(dir + "/config.json", opt.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              AllOf(HasSubstr("do_layer_norm_before: false (post-norm blocks) is not implemented"),
                    HasSubstr("config.json")));
  nlohmann::json neo = {{"model_type", "gpt_neo"},
                        {"vocab_size", 16},
                        {"hidden_size", 8},
                        {"num_layers", 3},
                        {"num_heads", 2}};
  neo["attention_types"] = nlohmann::json::parse(R"([[["global", "local"], 1]])");
  WriteText(dir + "/config.json", neo.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              HasSubstr("attention_types: 2 layers where num_layers is 3"));
  neo["attention_types"] = nlohmann::json::parse(R"([[["global", "sparse", "local"], 1]])");
  WriteText(dir + "/config.json", neo.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              HasSubstr("\"sparse\" is neither \"global\" nor \"local\""));
  nlohmann::json gptj = {{"model_type", "gptj"}, {"vocab_size", 16}, {"n_embd", 8},
                         {"n_layer", 1},         {"n_head", 2},      {"rotary_dim", nullptr}};
  WriteText(dir + "/config.json", gptj.dump());
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("rotary_dim: null"));
  gptj["rotary_dim"] = 6;  // past the head's 4 dimensions
  WriteText(dir + "/config.json", gptj.dump());
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("rotary_dim: 6 must be even and in 2..4"));
  // Quantized checkpoints are refused by the option's name whatever the family.
  gptj["rotary_dim"] = 4;
  gptj["quantization_config"] = {{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}};
  WriteText(dir + "/config.json", gptj.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              AllOf(HasSubstr("quantization_config: quantized or compressed checkpoints are not "
                              "supported"),
                    HasSubstr("config.json")));
}

TEST(ModelLoader, RotaryOptionsOfNewFamiliesAreCheckedByName) {
  const std::string dir = TempDir("rotary");
  WriteTinyGpt2(dir, at::kFloat);
  const nlohmann::json llama_style = {{"vocab_size", 16},        {"hidden_size", 8},
                                      {"num_hidden_layers", 2},  {"num_attention_heads", 2},
                                      {"intermediate_size", 16}, {"max_position_embeddings", 32}};
  // Phi-3's longrope needs one short and one long factor per rotating frequency (4 / 2 here).
  nlohmann::json phi3 = llama_style;
  phi3["model_type"] = "phi3";
  phi3["original_max_position_embeddings"] = 8;
  phi3["rope_scaling"] = {{"type", "su"}, {"short_factor", {1.0, 2.0}}, {"long_factor", {1.0}}};
  WriteText(dir + "/config.json", phi3.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              HasSubstr("rope_scaling.long_factor must be a list of 2 numbers"));
  phi3["rope_scaling"]["long_factor"] = {1.0, "two"};
  WriteText(dir + "/config.json", phi3.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              HasSubstr("rope_scaling.long_factor must be a list of 2 numbers"));
  phi3["rope_scaling"]["type"] = "ntk-by-parts";
  WriteText(dir + "/config.json", phi3.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              HasSubstr("rope_scaling.rope_type \"ntk-by-parts\" is not supported"));
  // Gemma 3 keys its rotary by layer type.
  nlohmann::json gemma3 = llama_style;
  gemma3["model_type"] = "gemma3_text";
  gemma3["head_dim"] = 4;
  gemma3["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  WriteText(dir + "/config.json", gemma3.dump());
  EXPECT_THAT(LoadStatus(dir).message(),
              AllOf(HasSubstr("rope_parameters.rope_theta"), HasSubstr("full_attention"),
                    HasSubstr("sliding_attention")));
  gemma3["rope_parameters"] = {{"full_attention", {{"rope_type", "yarn"}}}};
  WriteText(dir + "/config.json", gemma3.dump());
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("\"yarn\" is not supported"));
}

TEST(ModelLoader, DtypeAndDeviceOptionsAreChecked) {
  const std::string dir = TempDir("options");
  WriteTinyGpt2(dir, at::kFloat);
  EXPECT_THAT(LoadStatus(dir, {"float64", "cpu"}).message(),
              HasSubstr("float32, bfloat16, float16"));
  EXPECT_EQ(LoadStatus(dir, {"float32", "tpu"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadStatus(dir, {"float32", "cuda:99"}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelLoader, ForwardRejectsBadInputWithoutCrashing) {
  const std::string dir = TempDir("forward");
  WriteTinyGpt2(dir, at::kFloat);
  auto model = LoadModel(dir, {});
  ASSERT_TRUE(model.ok());
  const auto status = [&](const ForwardRequest& r) { return (*model)->Forward(r).status(); };
  EXPECT_THAT(status({at::tensor({3, 16}, at::kLong).view({1, 2})}).message(),
              HasSubstr("token id 16 out of range: model has token ids 0..15"));
  EXPECT_THAT(status({at::ones({9}, at::kLong).view({1, 9})}).message(),
              HasSubstr("positions 0..7"));
  EXPECT_THAT(status({at::ones({3}, at::kFloat).view({1, 3})}).message(), HasSubstr("integer ids"));
  EXPECT_THAT(status({at::ones({1, 2}, at::kLong), at::ones({1, 3})}).message(),
              HasSubstr("attention_mask"));
  EXPECT_THAT(status({at::ones({1, 2}, at::kLong), {}, {}, 5}).message(),
              HasSubstr("stop_at_layer 5 out of range"));
  EXPECT_TRUE(status({at::ones({1, 2}, at::kLong)}).ok());
}

}  // namespace
}  // namespace lensd::engine
