// SAE parity with SAELens 6.54 and sparsify 1.3 (sae_reference.py): random SAEs of every
// architecture and option written by the libraries themselves; lensd's Encode and Decode of the
// same inputs against the libraries' encode and decode (float32). Tolerance: 1e-5 absolute on
// features and reconstructions (values of order 1). Also the loader's errors for malformed folders.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#include "core/engine/models/model_loader.h"
#include "core/engine/sae/sae.h"
#include "core/engine/served/served_saes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/parity/reference_tensors.h"

namespace lensd::engine {
namespace {

namespace fs = std::filesystem;
constexpr double kTolerance = 1e-5;

std::vector<nlohmann::json> Entries() {
  std::ifstream in(std::string(LENSD_TEST_BINARY_DIR) + "/parity/saes/manifest.json");
  if (!in) return {nlohmann::json{{"name", "missing_manifest"}}};
  return nlohmann::json::parse(in).get<std::vector<nlohmann::json>>();
}

std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (const auto& e : Entries()) names.push_back(e["name"]);
  return names;
}

std::string CaseDir(const std::string& name) {
  return std::string(LENSD_TEST_BINARY_DIR) + "/parity/saes/" + name;
}

class SaeParity : public ::testing::TestWithParam<std::string> {};

TEST_P(SaeParity, EncodeAndDecodeMatchTheLibrary) {
  const std::string dir = CaseDir(GetParam());
  ASSERT_TRUE(fs::exists(dir + "/reference.safetensors")) << "run the sae_reference fixture";
  auto ref = lensd::testing::ReadReference(dir + "/reference.safetensors");
  auto sae = Sae::Load(dir, std::nullopt, at::kCPU);
  ASSERT_TRUE(sae.ok()) << sae.status();
  const SaeCode code = (*sae)->Encode(ref["x"]);
  EXPECT_EQ(code.features.sizes(), ref["features"].sizes());
  const double feature_diff = (code.features - ref["features"]).abs().max().item<double>();
  EXPECT_LT(feature_diff, kTolerance) << GetParam();
  // The same active set, not only close values.
  EXPECT_TRUE(code.features.ne(0).equal(ref["features"].ne(0))) << GetParam();
  const double recon_diff =
      ((*sae)->Decode(code) - ref["reconstruction"]).abs().max().item<double>();
  EXPECT_LT(recon_diff, kTolerance) << GetParam();
  EXPECT_GT(ref["features"].ne(0).sum().item<int64_t>(), 0);
  EXPECT_EQ((*sae)->bytes() > 0, true);
}

// FeatureGrad is the gradient of a scalar of the reconstruction with respect to the features.
TEST_P(SaeParity, FeatureGradIsTheDecoderJacobian) {
  const std::string dir = CaseDir(GetParam());
  auto ref = lensd::testing::ReadReference(dir + "/reference.safetensors");
  auto sae = Sae::Load(dir, std::nullopt, at::kCPU);
  ASSERT_TRUE(sae.ok()) << sae.status();
  const SaeCode code = (*sae)->Encode(ref["x"]);
  const at::Tensor weights = at::randn(ref["x"].sizes());
  const at::Tensor f = code.features.detach().clone().requires_grad_(true);
  ((*sae)->Decode(f, code) * weights).sum().backward();
  const double diff = ((*sae)->FeatureGrad(weights, code) - f.grad()).abs().max().item<double>();
  EXPECT_LT(diff, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Saes, SaeParity, ::testing::ValuesIn(Names()),
                         [](const auto& info) { return info.param; });

// A copy of a reference folder with cfg.json edited.
std::string EditedCopy(const std::string& from, const std::string& to,
                       const std::function<void(nlohmann::json&)>& edit) {
  const std::string dir = ::testing::TempDir() + "/" + to;
  fs::remove_all(dir);
  fs::copy(CaseDir(from), dir);
  nlohmann::json cfg;
  std::ifstream(dir + "/cfg.json") >> cfg;
  edit(cfg);
  std::ofstream(dir + "/cfg.json") << cfg.dump();
  return dir;
}

// SAEs attached to models of the newer families (BLOOM, GPT-J): the served model's EncodeSae of
// the case's tokens gives, at every position, the features SAELens's encode gives for the
// activation transformers computes at the SAE's hook point.
TEST(SaeOnModel, EncodeThroughTheModelMatchesTheLibraryOnItsActivations) {
  int cases = 0;
  for (const auto& entry : Entries()) {
    if (!entry.contains("model")) continue;
    ++cases;
    const std::string name = entry["name"];
    auto model = LoadModel(entry["model"].get<std::string>(), {"float32", "cpu"});
    ASSERT_TRUE(model.ok()) << name << ": " << model.status();
    ServedSaes saes(**model);
    auto loaded = saes.Load(name, CaseDir(name), {});
    ASSERT_TRUE(loaded.ok()) << name << ": " << loaded.status();
    EncodeSaeSpec spec;
    spec.tokens = entry["tokens"].get<std::vector<int64_t>>();
    spec.top_k = 0;  // every active feature
    auto encodings = saes.Encode(spec);
    ASSERT_TRUE(encodings.ok()) << name << ": " << encodings.status();
    ASSERT_EQ(encodings->size(), 1u);
    const SaeEncoding& e = (*encodings)[0];
    const at::Tensor expected =
        lensd::testing::ReadReference(CaseDir(name) + "/reference.safetensors")
            .at("features")[0];  // [t, d_sae]
    at::Tensor got = at::zeros_like(expected);
    for (int64_t p = 0; p + 1 < static_cast<int64_t>(e.offsets.size()); ++p) {
      for (int64_t i = e.offsets[p]; i < e.offsets[p + 1]; ++i) {
        got[p][e.indices[i]] = e.values[i];
      }
    }
    EXPECT_EQ(static_cast<int64_t>(e.offsets.size()), expected.size(0) + 1) << name;
    EXPECT_LT((got - expected).abs().max().item<double>(), kTolerance) << name;
    EXPECT_TRUE(got.ne(0).equal(expected.ne(0))) << name;
  }
  EXPECT_EQ(cases, 2) << "sae_reference.py writes a BLOOM and a GPT-J case";
}

TEST(SaeLoad, UnknownArchitectureNamesTheFileAndTheChoices) {
  const std::string dir =
      EditedCopy("standard", "bad_arch", [](nlohmann::json& c) { c["architecture"] = "banana"; });
  auto sae = Sae::Load(dir, std::nullopt, at::kCPU);
  EXPECT_EQ(sae.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sae.status().message(), ::testing::HasSubstr("cfg.json: architecture \"banana\""));
  EXPECT_THAT(sae.status().message(), ::testing::HasSubstr("standard, gated, jumprelu, topk"));
}

TEST(SaeLoad, WrongShapeNamesTheTensor) {
  const std::string dir =
      EditedCopy("standard", "bad_d_sae", [](nlohmann::json& c) { c["d_sae"] = 65; });
  auto sae = Sae::Load(dir, std::nullopt, at::kCPU);
  EXPECT_EQ(sae.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sae.status().message(), ::testing::HasSubstr("sae_weights.safetensors"));
  EXPECT_THAT(sae.status().message(), ::testing::HasSubstr("W_enc"));
}

TEST(SaeLoad, TranscodersAndBadKAreRefused) {
  const std::string transcoder =
      EditedCopy("sparsify_topk", "transcoder", [](nlohmann::json& c) { c["transcode"] = true; });
  EXPECT_THAT(Sae::Load(transcoder, std::nullopt, at::kCPU).status().message(),
              ::testing::HasSubstr("transcode is true"));
  const std::string big_k = EditedCopy("topk", "big_k", [](nlohmann::json& c) { c["k"] = 1000; });
  EXPECT_THAT(Sae::Load(big_k, std::nullopt, at::kCPU).status().message(),
              ::testing::HasSubstr("k = 1000 exceeds d_sae = 64"));
  EXPECT_EQ(Sae::Load(::testing::TempDir() + "/nowhere", std::nullopt, at::kCPU).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SaeLoad, LoadsIntoTheRequestedDtype) {
  auto sae = Sae::Load(CaseDir("standard"), at::kBFloat16, at::kCPU);
  ASSERT_TRUE(sae.ok()) << sae.status();
  EXPECT_EQ((*sae)->dtype(), at::kBFloat16);
  EXPECT_EQ((*sae)->config().dtype, "bfloat16");
  EXPECT_EQ((*sae)->bytes(), (16 * 64 * 2 + 64 + 16) * 2);
}

}  // namespace
}  // namespace lensd::engine
