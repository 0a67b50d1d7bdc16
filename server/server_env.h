// What every RPC handler shares: the registry, auth, limits, metrics and the background thread
// for admin work. Owned by LensdServer; handlers hold a const reference.
#ifndef LENSD_SERVER_SERVER_ENV_H_
#define LENSD_SERVER_SERVER_ENV_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/auth.h"
#include "core/jobs/job_manager.h"
#include "core/model_registry.h"
#include "core/tenant_limiter.h"
#include "server/background.h"
#include "server/metrics.h"

namespace lensd::server {

struct Limits {
  int64_t max_tokens_per_request = 4096;
  int64_t max_new_tokens = 1024;
  int64_t max_message_bytes = 64 << 20;
  int64_t max_concurrent_streams = 128;
  int64_t max_queue_per_model = 256;
  int64_t max_requests_per_tenant = 64;
  int64_t batch_max_tokens = 4096;
  int64_t batch_max_delay_us = 2000;
  int64_t max_hook_points = 64;
  int64_t max_stream_buffer_bytes = 256 << 20;   // unread bytes one stream may queue
  int64_t max_request_bytes = int64_t{4} << 30;  // one request's estimated answer or work
  int64_t max_tenant_bytes = int64_t{8} << 30;   // the estimates of a tenant's requests in flight
  int64_t max_watches_per_tenant = 64;           // WatchJob streams one tenant may hold open
  int64_t max_patching_cells = 100000;           // patched runs of one ActivationPatching
};

struct ServerEnv {
  std::string version;
  std::string min_client_version;
  Limits limits;
  std::optional<TokenStore> tokens;  // unset: auth off (loopback only, or explicitly allowed)
  bool log_requests = true;
  ModelRegistry* registry = nullptr;
  TenantLimiter* tenants = nullptr;
  Metrics* metrics = nullptr;
  Background* background = nullptr;      // admin work (loads, unloads) off the gRPC threads
  JobManager* jobs = nullptr;            // training jobs
  std::string repository;                // the model repository (trained lenses are written here)
  std::string data_root;                 // training data lives under it ("" = inline texts only)
  std::string cpu_training_precision;    // what precision "auto" trains in on the CPU
  std::function<void()> models_changed;  // after a model load or unload (health); may be empty
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_SERVER_ENV_H_
