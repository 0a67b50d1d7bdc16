// SAEs and attribution through the server, on the demo model and its SAE (res3-topk, written by
// deploy/training/train_demo_sae.py in SAELens's format): LoadSae / UnloadSae (admin, memory,
// GetModel's lists), EncodeSae and NodeAttribution equal to the engine called directly with the
// same folders, token-trace's columns filled from the tokenizer, LayerAttribution's terms summing
// to the logit, GetActivations's gradients equal to NodeAttribution's per-dimension error
// gradients, and bad requests refused with the field named.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/engine/served/engine_factory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lensd/v1/attribution.grpc.pb.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::lensd::v1;

constexpr char kModel[] = "kjv-gpt2";
constexpr char kSae[] = "res3-topk";
constexpr char kPrompt[] = "And God said, Let there be light: and there was light.";
constexpr char kRepository[] = LENSD_E2E_REPOSITORY;

class AttributionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new LensdProcess({"--models=kjv-gpt2"});
    auto direct = engine::LoadServedModel(std::string(kRepository) + "/" + kModel, {});
    ASSERT_TRUE(direct.ok()) << direct.status();
    direct_ = direct->release();
    auto sae =
        direct_->LoadSae(kSae, std::string(kRepository) + "/" + kModel + "/saes/" + kSae, {});
    ASSERT_TRUE(sae.ok()) << sae.status();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Stop(), 0) << server_->Log();
    delete server_;
    delete direct_;
  }
  void SetUp() override {
    v1::SaeInfo info;
    const grpc::Status s = LoadSae(server_->admin_token(), kSae, "", &info);
    ASSERT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  }
  std::unique_ptr<v1::Models::Stub> models() { return v1::Models::NewStub(server_->channel()); }
  std::unique_ptr<v1::Lens::Stub> lens() { return v1::Lens::NewStub(server_->channel()); }
  std::unique_ptr<v1::Attribution::Stub> attribution() {
    return v1::Attribution::NewStub(server_->channel());
  }
  grpc::Status LoadSae(const std::string& token, const std::string& name, const std::string& hook,
                       v1::SaeInfo* info) {
    v1::LoadSaeRequest load;
    load.set_model(kModel);
    load.set_sae(name);
    load.set_hook_point(hook);
    return models()->LoadSae(Context(token).get(), load, info);
  }
  grpc::Status Encode(const v1::EncodeSaeRequest& r, v1::EncodeSaeResponse* out) {
    return attribution()->EncodeSae(Context(server_->read_token()).get(), r, out);
  }
  grpc::Status Attribute(const v1::NodeAttributionRequest& r, v1::NodeAttributionResponse* out) {
    return attribution()->NodeAttribution(Context(server_->read_token()).get(), r, out);
  }
  static v1::NodeAttributionRequest Request() {
    v1::NodeAttributionRequest r;
    r.set_model(kModel);
    r.mutable_input()->set_text(kPrompt);
    r.add_saes(kSae);
    return r;
  }
  static std::vector<int64_t> Ids(const google::protobuf::RepeatedPtrField<v1::Token>& tokens) {
    std::vector<int64_t> ids;
    for (const v1::Token& t : tokens) ids.push_back(t.id());
    return ids;
  }

  static LensdProcess* server_;
  static ServedModel* direct_;
};
LensdProcess* AttributionTest::server_ = nullptr;
ServedModel* AttributionTest::direct_ = nullptr;

TEST_F(AttributionTest, LoadSaeIsAdminOnlyCheckedAndListed) {
  v1::SaeInfo info;
  EXPECT_EQ(LoadSae(server_->read_token(), kSae, "", &info).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status s = LoadSae(server_->admin_token(), "no-such-sae", "", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(kSae));  // names the SAEs there are
  EXPECT_EQ(LoadSae(server_->admin_token(), kSae, "", &info).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  s = LoadSae(server_->admin_token(), "wrong-hook", "", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("cfg.json"));
  EXPECT_THAT(s.error_message(), HasSubstr("512"));
  s = LoadSae(server_->admin_token(), "wrong-hook", "blocks.9.hook_resid_pre", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("hook_point"));
  // The override fixes the folder: the demo SAE's weights read the stream at another layer.
  s = LoadSae(server_->admin_token(), "wrong-hook", "blocks.2.hook_resid_post", &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.hook_point(), "blocks.2.hook_resid_post");

  v1::GetModelRequest get;
  get.set_model(kModel);
  v1::ModelInfo model;
  ASSERT_TRUE(models()->GetModel(Context(server_->read_token()).get(), get, &model).ok());
  EXPECT_THAT(model.available_saes(), ::testing::UnorderedElementsAre(kSae, "wrong-hook"));
  ASSERT_EQ(model.saes_size(), 2);
  const v1::SaeInfo& demo = model.saes(0);
  EXPECT_EQ(demo.name(), kSae);
  EXPECT_EQ(demo.format(), "saelens");
  EXPECT_EQ(demo.architecture(), "topk");
  EXPECT_EQ(demo.hook_point(), "blocks.3.hook_resid_pre");
  EXPECT_EQ(demo.d_in(), 128);
  EXPECT_EQ(demo.d_sae(), 1024);
  EXPECT_EQ(demo.k(), 16);
  EXPECT_EQ(demo.memory_bytes(), (2 * 128 * 1024 + 1024 + 128) * 4);

  v1::UnloadSaeRequest unload;
  unload.set_model(kModel);
  unload.set_sae("wrong-hook");
  v1::UnloadSaeResponse freed;
  EXPECT_EQ(models()->UnloadSae(Context(server_->read_token()).get(), unload, &freed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(models()->UnloadSae(Context(server_->admin_token()).get(), unload, &freed).ok());
  EXPECT_EQ(freed.freed_bytes(), (2 * 128 * 1024 + 1024 + 128) * 4);
  EXPECT_EQ(models()->UnloadSae(Context(server_->admin_token()).get(), unload, &freed).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AttributionTest, EncodeSaeEqualsTheEngine) {
  v1::EncodeSaeRequest r;
  r.set_model(kModel);
  r.mutable_input()->set_text(kPrompt);
  r.set_top_k(5);
  v1::EncodeSaeResponse response;
  const grpc::Status s = Encode(r, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.saes_size(), 1);
  const v1::SaeFeatures& got = response.saes(0);
  EXPECT_EQ(got.hook_point(), "blocks.3.hook_resid_pre");
  const auto t = static_cast<int64_t>(response.tokens_size());
  ASSERT_EQ(got.offsets_size(), t + 1);

  EncodeSaeSpec spec;
  spec.tokens = Ids(response.tokens());
  spec.saes = {kSae};
  spec.top_k = 5;
  auto direct = direct_->EncodeSae(spec);
  ASSERT_TRUE(direct.ok()) << direct.status();
  const SaeEncoding& want = (*direct)[0];
  ASSERT_EQ(got.indices_size(), static_cast<int>(want.indices.size()));
  for (int i = 0; i < got.indices_size(); ++i) {
    EXPECT_EQ(got.indices(i), want.indices[i]);
    EXPECT_NEAR(got.values(i), want.values[i], 1e-6);
  }
  for (int64_t p = 0; p < t; ++p) {
    EXPECT_EQ(got.l0(p), want.l0[p]);
    EXPECT_EQ(got.offsets(p + 1) - got.offsets(p), std::min<int64_t>(got.l0(p), 5));
    EXPECT_LE(got.l0(p), 16);
    EXPECT_NEAR(got.error_norm(p), want.error_norm[p], 1e-5);
  }
  EXPECT_NEAR(got.fvu_total(), want.fvu_total, 1e-6);
  EXPECT_LT(got.fvu_total(), 0.5) << "the trained SAE reconstructs most of the variance";
}

TEST_F(AttributionTest, NodeAttributionEqualsTheEngineWithTokenTraceColumns) {
  v1::NodeAttributionRequest r = Request();
  r.set_top_n(20);
  r.set_sign_convention(v1::SIGN_CONVENTION_TOKEN_TRACE);
  v1::NodeAttributionResponse response;
  const grpc::Status s = Attribute(r, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.nodes_size(), 20);
  const std::vector<int64_t> tokens = Ids(response.tokens());

  NodeAttributionSpec spec;
  spec.tokens = tokens;
  spec.saes = {kSae};
  spec.top_n = 20;
  spec.sign = SignConvention::kTokenTrace;
  auto direct = direct_->AttributeNodes(spec);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_NEAR(response.metric(), direct->metric, 1e-6);
  EXPECT_NEAR(response.sum_of_effects(), direct->sum_of_effects, 1e-5);
  EXPECT_EQ(response.nodes_considered(), direct->nodes_considered);
  EXPECT_EQ(response.target().id(), tokens.back()) << "the loss's target is the last token";
  for (int i = 0; i < response.nodes_size(); ++i) {
    const v1::AttributionNode& n = response.nodes(i);
    const AttributionNode& want = direct->nodes[static_cast<size_t>(i)];
    EXPECT_EQ(n.sae(), kSae);
    EXPECT_EQ(n.module_name(), "blocks.3.hook_resid_pre");
    EXPECT_EQ(n.layer(), 3);
    EXPECT_EQ(n.module_type(), "resid");
    EXPECT_EQ(n.token_idx(), want.position);
    EXPECT_EQ(n.token_str(), response.tokens(static_cast<int>(n.token_idx())).text());
    EXPECT_EQ(n.act_type(), want.error ? "error" : "feature");
    EXPECT_EQ(n.feature(), want.index);
    EXPECT_NEAR(n.effect(), want.effect, 1e-6);
    EXPECT_FLOAT_EQ(n.abs_effect(), std::abs(n.effect()));
    if (n.act_type() == "feature") {
      EXPECT_NEAR(n.effect(), n.value() * n.grad(), 1e-5) << "token-trace's ie = value x grad";
    }
    if (i > 0) {
      EXPECT_GE(response.nodes(i - 1).abs_effect(), n.abs_effect());
    }
  }
}

TEST_F(AttributionTest, ActivationGradientsAreTheErrorNodesGradients) {
  v1::GetActivationsRequest r;
  r.set_model(kModel);
  r.mutable_input()->set_text(kPrompt);
  r.add_hook_points("blocks.3.hook_resid_pre");
  r.set_gradients(true);
  auto context = Context(server_->read_token());
  auto reader = lens()->GetActivations(context.get(), r);
  v1::TensorChunk chunk;
  std::map<std::string, std::string> data;
  std::map<std::string, std::vector<int64_t>> shapes;
  while (reader->Read(&chunk)) {
    data[chunk.name()] += chunk.data();
    shapes[chunk.name()].assign(chunk.shape().begin(), chunk.shape().end());
  }
  const grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(data.count("blocks.3.hook_resid_pre.grad"), 1U);
  const auto& grad_bytes = data["blocks.3.hook_resid_pre.grad"];
  const std::vector<int64_t> shape = shapes["blocks.3.hook_resid_pre.grad"];
  ASSERT_EQ(shape.size(), 3U);
  ASSERT_EQ(shape[2], 128);
  std::vector<float> grad(grad_bytes.size() / 4);
  std::memcpy(grad.data(), grad_bytes.data(), grad_bytes.size());

  v1::NodeAttributionRequest a = Request();
  a.set_error_nodes(v1::ERROR_NODES_PER_DIMENSION);
  v1::NodeAttributionResponse response;
  ASSERT_TRUE(Attribute(a, &response).ok());
  int checked = 0;
  for (const v1::AttributionNode& n : response.nodes()) {
    if (n.act_type() != "error") continue;
    EXPECT_NEAR(n.grad(), grad[n.token_idx() * 128 + n.feature()], 1e-6);
    ++checked;
  }
  EXPECT_GT(checked, 100);
  // The last position does not reach the loss of the last prediction (T - 2): zero gradient.
  const int64_t last = shape[1] - 1;
  for (int d = 0; d < 128; ++d) EXPECT_EQ(grad[last * 128 + d], 0.0F);
}

TEST_F(AttributionTest, LayerAttributionTermsSumToTheLogit) {
  v1::LayerAttributionRequest r;
  r.set_model(kModel);
  r.mutable_input()->set_text(kPrompt);
  v1::LayerAttributionResponse response;
  grpc::Status s = lens()->LayerAttribution(Context(server_->read_token()).get(), r, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.labels_size(), 2 + 2 * 6);  // embed, pos_embed, 6 x (attn, mlp)
  EXPECT_EQ(response.labels(0), "embed");
  EXPECT_EQ(response.labels(13), "5_mlp_out");
  double sum = response.bias();
  for (const double v : response.values()) sum += v;
  EXPECT_NEAR(sum, response.logit(), 1e-4 * std::max(1.0, std::abs(response.logit())));
  EXPECT_EQ(response.position(), response.tokens_size() - 1);

  const double logit = response.logit();
  r.set_per_head(true);
  s = lens()->LayerAttribution(Context(server_->read_token()).get(), r, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.labels_size(), 2 + 6 * (4 + 1 + 1));  // heads, attn bias and mlp per layer
  EXPECT_EQ(response.labels(2), "0_attn_head0");
  EXPECT_EQ(response.labels(6), "0_attn_bias");
  sum = response.bias();
  for (const double v : response.values()) sum += v;
  EXPECT_NEAR(sum, logit, 1e-4 * std::max(1.0, std::abs(logit)));

  r.set_mode(v1::LAYER_ATTRIBUTION_MODE_LOGIT_LENS);
  r.set_per_head(true);
  s = lens()->LayerAttribution(Context(server_->read_token()).get(), r, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("per_head"));
  r.set_per_head(false);
  r.set_target(response.target().id());
  s = lens()->LayerAttribution(Context(server_->read_token()).get(), r, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.labels_size(), 7);
  EXPECT_NEAR(response.values(6), response.logit(), 1e-4) << "the last row is the model's logit";
  r.set_position(1000);
  s = lens()->LayerAttribution(Context(server_->read_token()).get(), r, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("position"));
}

TEST_F(AttributionTest, BadRequestsNameTheField) {
  v1::NodeAttributionResponse response;
  auto expect = [&](const v1::NodeAttributionRequest& r, grpc::StatusCode code,
                    const std::string& field) {
    const grpc::Status s = Attribute(r, &response);
    EXPECT_EQ(s.error_code(), code) << field << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(field));
  };
  v1::NodeAttributionRequest r = Request();
  r.set_saes(0, "no-such-sae");
  expect(r, grpc::StatusCode::NOT_FOUND, "saes");
  r = Request();
  r.mutable_metric()->set_kind(v1::METRIC_KIND_LOGIT_DIFF);
  r.mutable_metric()->set_target(5);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "foil");
  r = Request();
  r.mutable_metric()->add_positions(500);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "metric.positions");
  r = Request();
  r.set_baseline(v1::BASELINE_PATCH);
  r.mutable_patch()->set_text("In the beginning");
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "patch");
  r = Request();
  r.add_reference()->set_text("In the beginning");
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "reference");
  r = Request();
  r.set_baseline(v1::BASELINE_MEAN_PER_POSITION);
  r.add_reference()->set_text("In the beginning");
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "reference[0]");
  r = Request();
  r.set_method(static_cast<v1::Method>(7));
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "method");
  r = Request();
  r.set_method(v1::METHOD_INTEGRATED_GRADIENTS);
  r.set_ig_steps(0);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "ig_steps");
  r = Request();
  r.mutable_input()->mutable_tokens()->add_ids(99999);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "input");
  r = Request();
  r.set_model("no-such-model");
  expect(r, grpc::StatusCode::NOT_FOUND, "no-such-model");

  // A good request still works after the bad ones: nothing was left broken.
  ASSERT_TRUE(Attribute(Request(), &response).ok());
  EXPECT_GT(response.nodes_size(), 0);
}

}  // namespace
}  // namespace lensd::e2e
