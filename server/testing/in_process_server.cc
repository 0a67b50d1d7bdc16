#include "server/testing/in_process_server.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "gtest/gtest.h"

namespace lensd::server::testing {
namespace fs = std::filesystem;

ServedModelInfo SmallModelInfo(int64_t layers, int64_t vocab) {
  ServedModelInfo info;
  info.architecture = "gpt2";
  info.num_layers = layers;
  info.d_model = 8;
  info.num_heads = 2;
  info.vocab_size = vocab;
  info.max_positions = 64;
  info.absolute_positions = true;
  info.dtype = "float32";
  info.device = "cpu";
  info.parameter_bytes = 1 << 20;
  info.eos_token_ids = {vocab - 1};
  for (int64_t l = 0; l < layers; ++l) {
    info.hook_points.push_back(absl::StrCat("blocks.", l, ".hook_resid_pre"));
    info.hook_widths.push_back(8);
    info.hook_per_key_position.push_back(false);
  }
  return info;
}

absl::StatusOr<LensDescription> StubAttachments::LoadLens(const std::string& name,
                                                          const std::string&) {
  return absl::UnimplementedError("this fake attaches no lens " + name);
}
absl::StatusOr<int64_t> StubAttachments::UnloadLens(const std::string& name) {
  return absl::UnimplementedError("this fake attaches no lens " + name);
}
std::vector<LensDescription> StubAttachments::Lenses() const { return {{"logit", "logit", 0, ""}}; }
absl::StatusOr<int64_t> StubAttachments::EstimateLensBytes(const std::string&) const { return 0; }
absl::StatusOr<SaeDescription> StubAttachments::LoadSae(const std::string& name, const std::string&,
                                                        const SaeLoadOptions&) {
  return absl::UnimplementedError("this fake attaches no SAE " + name);
}
absl::StatusOr<int64_t> StubAttachments::UnloadSae(const std::string& name) {
  return absl::UnimplementedError("this fake attaches no SAE " + name);
}
std::vector<SaeDescription> StubAttachments::Saes() const { return {}; }
absl::StatusOr<int64_t> StubAttachments::EstimateSaeBytes(const std::string&,
                                                          const SaeLoadOptions&) const {
  return 0;
}

absl::StatusOr<std::unique_ptr<InProcessServer>> InProcessServer::StartFake(
    lensd::testing::FakeRoles roles, ServerOptions options) {
  FakeModel m;
  m.name = "fake";
  m.info = SmallModelInfo();
  m.roles = std::move(roles);
  return Start({std::move(m)}, std::move(options));
}

ServerOptions InProcessServer::DefaultOptions() {
  static std::atomic<int> counter{0};
  const fs::path root = fs::path(::testing::TempDir()) /
                        absl::StrCat("lensd_in_process_", getpid(), "_", counter.fetch_add(1));
  ServerOptions o;
  o.address = "127.0.0.1:0";
  o.metrics_address = "";
  o.repository = (root / "repository").string();
  o.state_dir = (root / "state").string();
  o.budgets = {{"cpu", int64_t{1} << 30}};
  o.version = "0.0.0-test";
  o.log_requests = false;
  return o;
}

absl::StatusOr<std::unique_ptr<InProcessServer>> InProcessServer::Start(
    std::vector<FakeModel> models, ServerOptions options) {
  std::unique_ptr<InProcessServer> s(new InProcessServer());
  s->root_ = fs::path(options.repository).parent_path().string();
  auto by_dir = std::make_shared<std::map<std::string, FakeModel>>();
  for (FakeModel& m : models) {
    const fs::path dir = fs::path(options.repository) / m.name;
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << "{\"model_type\": \"" << m.info.architecture << "\"}\n";
    if (m.load_at_start) options.models.push_back({m.name, "", ""});
    (*by_dir)[dir.string()] = std::move(m);
  }
  ModelFactory factory;
  factory.estimate_bytes = [by_dir](const std::string& dir,
                                    const ServedModelOptions&) -> absl::StatusOr<int64_t> {
    return by_dir->at(dir).info.parameter_bytes;
  };
  factory.load = [by_dir, live = s->live_](
                     const std::string& dir,
                     const ServedModelOptions&) -> absl::StatusOr<std::unique_ptr<ServedModel>> {
    const FakeModel& m = by_dir->at(dir);
    if (!m.load_error.ok()) return m.load_error;
    return std::make_unique<lensd::testing::FakeServedModel>(m.info, live.get(), m.roles);
  };
  factory.canonical_device = [](const std::string& device) -> absl::StatusOr<std::string> {
    if (device != "cpu") return absl::InvalidArgumentError("device: only cpu in this test");
    return device;
  };
  factory.release_memory = [] {};
  LENSD_ASSIGN_OR_RETURN(s->server_, LensdServer::Start(std::move(options), std::move(factory)));
  LENSD_RETURN_IF_ERROR(s->server_->LoadStartupModels());
  s->channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", s->server_->port()),
                                    grpc::InsecureChannelCredentials());
  return s;
}

InProcessServer::~InProcessServer() {
  if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
  server_.reset();
  std::error_code ec;
  fs::remove_all(root_, ec);
}

}  // namespace lensd::server::testing
