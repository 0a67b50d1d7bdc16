// The Models service in process, on fake models (server/testing/): a load that fails leaves the
// model FAILED with the reason, and a later good load clears it; the bounds admission uses are
// the ones GetServerInfo reports; an unload returns the weights' bytes and a second unload is
// refused by name.
#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "lensd/v1/models.grpc.pb.h"
#include "server/testing/in_process_server.h"

namespace lensd::server {
namespace {
using testing::FakeModel;
using testing::InProcessServer;

class ModelsServiceTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<FakeModel> models,
                   ServerOptions options = InProcessServer::DefaultOptions()) {
    absl::StatusOr<std::unique_ptr<InProcessServer>> s =
        InProcessServer::Start(std::move(models), std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    models_ = v1::Models::NewStub(server_->channel());
  }

  grpc::Status Load(const std::string& name, v1::ModelInfo* info) {
    grpc::ClientContext context;
    v1::LoadModelRequest request;
    request.set_model(name);
    return models_->LoadModel(&context, request, info);
  }
  v1::ModelInfo Get(const std::string& name) {
    grpc::ClientContext context;
    v1::GetModelRequest request;
    request.set_model(name);
    v1::ModelInfo info;
    const grpc::Status s = models_->GetModel(&context, request, &info);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return info;
  }

  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<v1::Models::Stub> models_;
};

FakeModel Model(const std::string& name, absl::Status load_error = absl::OkStatus()) {
  FakeModel m;
  m.name = name;
  m.info = testing::SmallModelInfo();
  m.load_error = std::move(load_error);
  m.load_at_start = false;
  return m;
}

TEST_F(ModelsServiceTest, AFailedLoadLeavesTheModelFailedWithTheReason) {
  StartServer({Model("broken", absl::InvalidArgumentError(
                                   "model.safetensors: truncated: header says 4096 bytes, 10 "
                                   "in the file")),
               Model("good")});
  EXPECT_EQ(Get("broken").state(), v1::MODEL_STATE_AVAILABLE);
  v1::ModelInfo info;
  const grpc::Status s = Load("broken", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "model.safetensors: truncated"));
  const v1::ModelInfo failed = Get("broken");
  EXPECT_EQ(failed.state(), v1::MODEL_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(failed.state_reason(), "model.safetensors: truncated"))
      << failed.state_reason();
  EXPECT_EQ(server_->live_models(), 0);

  ASSERT_TRUE(Load("good", &info).ok());
  EXPECT_EQ(info.state(), v1::MODEL_STATE_READY);
  EXPECT_EQ(Get("good").state_reason(), "");
  EXPECT_EQ(server_->live_models(), 1);
}

TEST_F(ModelsServiceTest, ServerInfoReportsTheBoundsAdmissionUses) {
  ServerOptions options = InProcessServer::DefaultOptions();
  options.limits.max_request_bytes = 12345678;
  options.limits.max_requests_per_tenant = 7;
  StartServer({Model("m")}, options);
  grpc::ClientContext context;
  v1::ServerInfo info;
  ASSERT_TRUE(models_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.version(), "0.0.0-test");
  EXPECT_EQ(info.limits().max_request_bytes(), 12345678);
  EXPECT_EQ(info.limits().max_requests_per_tenant(), 7);
}

TEST_F(ModelsServiceTest, UnloadReturnsTheWeightsAndASecondUnloadIsRefusedByName) {
  StartServer({Model("m")});
  v1::ModelInfo info;
  ASSERT_TRUE(Load("m", &info).ok());
  EXPECT_EQ(server_->live_models(), 1);
  v1::UnloadModelRequest request;
  request.set_model("m");
  {
    grpc::ClientContext context;
    v1::UnloadModelResponse response;
    ASSERT_TRUE(models_->UnloadModel(&context, request, &response).ok());
    EXPECT_EQ(response.freed_bytes(), testing::SmallModelInfo().parameter_bytes);
  }
  EXPECT_EQ(server_->live_models(), 0);
  EXPECT_EQ(Get("m").state(), v1::MODEL_STATE_AVAILABLE);
  grpc::ClientContext context;
  v1::UnloadModelResponse response;
  const grpc::Status s = models_->UnloadModel(&context, request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "model m is not loaded")) << s.error_message();
}

}  // namespace
}  // namespace lensd::server
