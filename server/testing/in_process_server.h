// A real LensdServer in the test's own process, on a loopback port, serving fake models
// (core/testing/fake_served_model.h) from a throwaway repository: the services, admission,
// tenants, health and the registry run as in lensd, the engine does not. For fast tests of
// server/ without torch and without spawning processes.
#ifndef LENSD_SERVER_TESTING_IN_PROCESS_SERVER_H_
#define LENSD_SERVER_TESTING_IN_PROCESS_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/testing/fake_served_model.h"
#include "server/server.h"

namespace lensd::server::testing {

// One model folder of the repository and what loading it gives.
struct FakeModel {
  std::string name;
  ServedModelInfo info;
  lensd::testing::FakeRoles roles;
  absl::Status load_error;  // not OK: loading the folder fails with it
  bool load_at_start = true;
};

// The info of a small GPT-2-shaped fake: `layers` layers, vocab `vocab`, hook points
// blocks.{i}.hook_resid_pre of width 8.
ServedModelInfo SmallModelInfo(int64_t layers = 4, int64_t vocab = 50);

// Attachments with nothing to attach: the logit lens only, no SAEs, loads UNIMPLEMENTED. A test
// derives from it and overrides what it attaches.
class StubAttachments : public AttachmentsModel {
 public:
  absl::StatusOr<LensDescription> LoadLens(const std::string& name,
                                           const std::string& dir) override;
  absl::StatusOr<int64_t> UnloadLens(const std::string& name) override;
  std::vector<LensDescription> Lenses() const override;
  absl::StatusOr<int64_t> EstimateLensBytes(const std::string& dir) const override;
  absl::StatusOr<SaeDescription> LoadSae(const std::string& name, const std::string& dir,
                                         const SaeLoadOptions& options) override;
  absl::StatusOr<int64_t> UnloadSae(const std::string& name) override;
  std::vector<SaeDescription> Saes() const override;
  absl::StatusOr<int64_t> EstimateSaeBytes(const std::string& dir,
                                           const SaeLoadOptions& options) const override;
};

class InProcessServer {
 public:
  // Options every test starts from: loopback port 0, no metrics endpoint, no auth, state and
  // repository under a fresh temporary folder.
  static ServerOptions DefaultOptions();

  // Writes the repository, starts the server and loads the models marked load_at_start.
  static absl::StatusOr<std::unique_ptr<InProcessServer>> Start(std::vector<FakeModel> models,
                                                                ServerOptions options);
  // One model, "fake" (SmallModelInfo), loaded at start, playing the given roles.
  static absl::StatusOr<std::unique_ptr<InProcessServer>> StartFake(
      lensd::testing::FakeRoles roles, ServerOptions options = DefaultOptions());
  ~InProcessServer();

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  LensdServer& server() { return *server_; }
  // Fake models alive now (0 once every unload let go of its weights).
  int live_models() const { return live_->load(); }

 private:
  InProcessServer() = default;

  std::string root_;
  std::shared_ptr<std::atomic<int>> live_ = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<LensdServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace lensd::server::testing

#endif  // LENSD_SERVER_TESTING_IN_PROCESS_SERVER_H_
