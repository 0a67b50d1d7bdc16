// A running lensd: the gRPC server (Models and Lens services, health, reflection), the model
// registry and its schedulers, auth, limits and metrics, wired from ServerOptions.
// Thread-safe.
#ifndef LENSD_SERVER_SERVER_H_
#define LENSD_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/jobs/job_manager.h"
#include "core/jobs/job_store.h"
#include "core/model_registry.h"
#include "core/tenant_limiter.h"
#include "server/attribution_service.h"
#include "server/background.h"
#include "server/lens_service.h"
#include "server/metrics.h"
#include "server/models_service.h"
#include "server/server_env.h"
#include "server/training_service.h"

namespace lensd::server {

struct StartupModel {
  std::string name;
  std::string dtype;   // empty: float32
  std::string device;  // empty: cpu
};

struct ServerOptions {
  std::string address = "127.0.0.1:50051";
  std::string cpu_training_precision = "float32";  // reported by GetServerInfo
  std::string repository;
  std::vector<StartupModel> models;
  std::vector<std::pair<std::string, std::string>> lenses;  // (model, lens) to load at start
  std::vector<std::pair<std::string, std::string>> saes;    // (model, sae) to attach at start
  std::string tokens_file;                                  // empty: no auth
  bool allow_unauthenticated_remote = false;
  std::string tls_cert;  // PEM files; both set: TLS
  std::string tls_key;
  std::string tls_client_ca;  // set: mutual TLS (clients must present a certificate it signed)
  std::string metrics_address = "127.0.0.1:9464";  // empty: no metrics endpoint
  std::map<std::string, int64_t> budgets;          // device -> bytes
  int workers_per_model = 1;
  Limits limits;
  std::string state_dir = "lensd-state";  // jobs.db and checkpoints/
  // Where jobs are kept: "" for <state_dir>/jobs.db (SQLite), or a postgres:// URI shared by
  // several servers.
  std::string job_store;
  std::string checkpoint_dir;  // "": <state_dir>/checkpoints; shared storage for several servers
  std::string replica_id = "lensd";  // this server among those sharing a job store
  absl::Duration job_lease = absl::Seconds(30);
  std::string data_root;  // training data; "" = inline texts only
  int jobs_per_device = 1;
  int max_jobs_per_tenant = 8;
  int job_nice = 0;  // nice value of the job threads (JobManagerOptions::worker_nice)
  std::string version;
  std::string min_client_version;
  bool log_requests = true;
};

// Whether a listening address only accepts local connections (loopback or a unix socket).
bool IsLocalAddress(const std::string& address);

class LensdServer {
 public:
  // Validates the options, starts listening (health NOT_SERVING) and serving metrics.
  // INVALID_ARGUMENT names the bad option (an unauthenticated non-local address included).
  static absl::StatusOr<std::unique_ptr<LensdServer>> Start(ServerOptions options,
                                                            ModelFactory factory);
  ~LensdServer();

  // Loads the models, lenses and SAEs named in the options; health turns SERVING once all are in
  // (per service: lensd.v1.Models and lensd.v1.Training then; lensd.v1.Lens and
  // lensd.v1.Attribution while a model is loaded).
  absl::Status LoadStartupModels();
  // Stops accepting calls, lets in-flight calls finish (cancelling them at the deadline), then
  // drains every model's queue.
  void Shutdown(absl::Duration grace);

  int port() const { return port_; }
  int metrics_port() const { return metrics_ == nullptr ? 0 : metrics_->port(); }

 private:
  LensdServer() = default;
  // Sets each service's health from whether startup is done and any model is loaded.
  void UpdateHealth();

  ServerOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<TenantLimiter> tenants_;
  std::unique_ptr<Background> background_;
  ServerEnv env_;
  std::unique_ptr<ModelsService> models_service_;
  std::unique_ptr<LensService> lens_service_;
  std::unique_ptr<AttributionService> attribution_service_;
  std::unique_ptr<JobStore> job_store_;
  std::unique_ptr<JobRunner> job_runner_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<TrainingService> training_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
  std::atomic<bool> serving_{false};  // startup models are in and no shutdown began
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_SERVER_H_
