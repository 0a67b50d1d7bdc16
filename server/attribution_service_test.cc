// The Attribution service in process, on a fake model whose attribution role encodes with a rule
// a test recomputes (server/testing/): EncodeSae answers the model's features per position for
// the SAEs named (or every one attached); repeated names and an answer over the request bound are
// refused before any work.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "lensd/v1/attribution.grpc.pb.h"
#include "server/testing/in_process_server.h"

namespace lensd::server {
namespace {
using testing::InProcessServer;

SaeDescription Sae(const std::string& name, int64_t layer, int64_t d_sae) {
  SaeDescription d;
  d.name = name;
  d.format = "saelens";
  d.architecture = "standard";
  d.hook_point = "blocks." + std::to_string(layer) + ".hook_resid_pre";
  d.d_in = 8;
  d.d_sae = d_sae;
  d.dtype = "float32";
  d.prepend_bos = false;
  return d;
}

// Two SAEs attached: res1 (1,000 features) and res2 (500,000).
class FakeSaes : public testing::StubAttachments {
 public:
  std::vector<SaeDescription> Saes() const override {
    return {Sae("res1", 1, 1000), Sae("res2", 2, 500000)};
  }
};

// Position p of SAE s has two features: (token * 3 + s) mod d_sae with value token + 0.5, and
// the next index with value 0.25.
class FakeEncoder : public AttributionModel {
 public:
  absl::StatusOr<std::vector<SaeEncoding>> EncodeSae(const EncodeSaeSpec& spec) const override {
    ++calls;
    std::vector<SaeEncoding> out;
    const std::vector<SaeDescription> all = FakeSaes().Saes();
    for (size_t s = 0; s < all.size(); ++s) {
      const SaeDescription& sae = all[s];
      if (!spec.saes.empty() &&
          std::find(spec.saes.begin(), spec.saes.end(), sae.name) == spec.saes.end()) {
        continue;
      }
      SaeEncoding e;
      e.sae = sae.name;
      e.hook_point = sae.hook_point;
      e.offsets.push_back(0);
      for (const int64_t token : spec.tokens) {
        const int64_t index = (token * 3 + static_cast<int64_t>(s)) % sae.d_sae;
        e.indices.insert(e.indices.end(), {index, (index + 1) % sae.d_sae});
        e.values.insert(e.values.end(), {static_cast<float>(token) + 0.5F, 0.25F});
        e.offsets.push_back(static_cast<int64_t>(e.indices.size()));
        e.l0.push_back(2);
        e.error_norm.push_back(0.1F);
        e.fvu.push_back(0.01F);
      }
      e.fvu_total = 0.01;
      out.push_back(std::move(e));
    }
    return out;
  }
  absl::StatusOr<NodeAttributionOutput> AttributeNodes(const NodeAttributionSpec&,
                                                       const KeepGoing&) const override {
    return absl::UnimplementedError("no attribution here");
  }
  absl::StatusOr<LayerAttributionOutput> AttributeLayers(
      const LayerAttributionSpec&) const override {
    return absl::UnimplementedError("no attribution here");
  }
  absl::StatusOr<ActivationPatchingOutput> PatchActivations(
      const ActivationPatchingSpec&, const PatchingProgress&) const override {
    return absl::UnimplementedError("no patching here");
  }
  absl::Status ValidatePatching(const ActivationPatchingSpec&) const override {
    return absl::OkStatus();
  }

  mutable std::atomic<int> calls{0};
};

class AttributionServiceTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = InProcessServer::DefaultOptions()) {
    absl::StatusOr<std::unique_ptr<InProcessServer>> s = InProcessServer::StartFake(
        {.attachments = std::make_shared<FakeSaes>(), .attribution = encoder_}, std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = v1::Attribution::NewStub(server_->channel());
  }

  static v1::EncodeSaeRequest Request(const std::vector<int64_t>& tokens,
                                      const std::vector<std::string>& saes) {
    v1::EncodeSaeRequest r;
    r.set_model("fake");
    for (const int64_t t : tokens) r.mutable_input()->mutable_tokens()->add_ids(t);
    for (const std::string& s : saes) r.add_saes(s);
    return r;
  }

  grpc::Status Call(const v1::EncodeSaeRequest& request, v1::EncodeSaeResponse* response) {
    grpc::ClientContext context;
    return stub_->EncodeSae(&context, request, response);
  }

  std::shared_ptr<FakeEncoder> encoder_ = std::make_shared<FakeEncoder>();
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<v1::Attribution::Stub> stub_;
};

TEST_F(AttributionServiceTest, EncodeSaeAnswersTheModelsFeaturesPerPosition) {
  StartServer();
  v1::EncodeSaeResponse response;
  const grpc::Status s = Call(Request({4, 7, 9}, {"res1"}), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.tokens_size(), 3);
  ASSERT_EQ(response.saes_size(), 1);
  const v1::SaeFeatures& f = response.saes(0);
  EXPECT_EQ(f.sae(), "res1");
  EXPECT_EQ(f.hook_point(), "blocks.1.hook_resid_pre");
  EXPECT_EQ(std::vector<int64_t>(f.offsets().begin(), f.offsets().end()),
            (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(std::vector<int64_t>(f.indices().begin(), f.indices().end()),
            (std::vector<int64_t>{12, 13, 21, 22, 27, 28}));
  EXPECT_EQ(std::vector<float>(f.values().begin(), f.values().end()),
            (std::vector<float>{4.5F, 0.25F, 7.5F, 0.25F, 9.5F, 0.25F}));
  EXPECT_EQ(std::vector<int64_t>(f.l0().begin(), f.l0().end()), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_DOUBLE_EQ(f.fvu_total(), 0.01);

  // No SAE named: every attached one, in the model's order.
  ASSERT_TRUE(Call(Request({4}, {}), &response).ok());
  ASSERT_EQ(response.saes_size(), 2);
  EXPECT_EQ(response.saes(1).sae(), "res2");
  EXPECT_EQ(response.saes(1).indices(0), 13);
}

TEST_F(AttributionServiceTest, RepeatedSaesAndAnswersOverTheBoundAreRefusedBeforeAnyWork) {
  StartServer();
  v1::EncodeSaeResponse response;
  grpc::Status s = Call(Request({1, 2}, {"res1", "res1"}), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "saes")) << s.error_message();
  // Every feature of the 500,000-wide SAE at 64 positions: an answer far over the 64 MiB message.
  v1::EncodeSaeRequest every = Request(std::vector<int64_t>(64, 3), {"res2"});
  every.set_top_k(0);
  s = Call(every, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "1 SAEs x 64 positions x every feature"))
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "over the server's bound of 64 MiB"))
      << s.error_message();
  EXPECT_EQ(encoder_->calls.load(), 0);
  // The same SAE at its default top-k fits.
  every.clear_top_k();
  EXPECT_TRUE(Call(every, &response).ok());
  EXPECT_EQ(encoder_->calls.load(), 1);
}

}  // namespace
}  // namespace lensd::server
