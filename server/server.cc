#include "server/server.h"

#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <netinet/in.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/log_status.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/training_runner.h"

namespace lensd::server {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (o.tls_cert.empty()) {
    if (!o.tls_client_ca.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  LENSD_ASSIGN_OR_RETURN(pair.private_key, ReadFile(o.tls_key, "--tls_key"));
  LENSD_ASSIGN_OR_RETURN(pair.cert_chain, ReadFile(o.tls_cert, "--tls_cert"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca.empty()) {
    LENSD_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(o.tls_client_ca, "--tls_client_ca"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

bool IsLocalAddress(const std::string& address) {
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  std::string host = address.substr(0, address.rfind(':'));
  if (absl::StartsWith(host, "ipv4:")) host = host.substr(5);
  if (absl::StartsWith(host, "ipv6:")) host = host.substr(5);
  if (host == "localhost") return true;
  // Only a literal loopback address counts: a host name such as "127.example" resolves anywhere.
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

absl::StatusOr<std::unique_ptr<LensdServer>> LensdServer::Start(ServerOptions options,
                                                                ModelFactory factory) {
  std::unique_ptr<LensdServer> s(new LensdServer());
  s->options_ = std::move(options);
  const ServerOptions& o = s->options_;
  std::optional<TokenStore> tokens;
  if (!o.tokens_file.empty()) {
    LENSD_ASSIGN_OR_RETURN(tokens, TokenStore::Load(o.tokens_file));
  } else if (!IsLocalAddress(o.address) && !o.allow_unauthenticated_remote) {
    return absl::InvalidArgumentError(
        absl::StrCat("--address ", o.address,
                     " accepts remote connections but no --tokens_file is set; give "
                     "one (lensd token makes entries) or pass --allow_unauthenticated_remote"));
  }
  if (o.job_nice < 0 || o.job_nice > 19) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--job_nice ", o.job_nice, " is outside 0..19 (a job cannot outrank serving calls)"));
  }
  LENSD_ASSIGN_OR_RETURN(const auto credentials, Credentials(o));
  LENSD_ASSIGN_OR_RETURN(s->metrics_, Metrics::Create(o.metrics_address));

  RegistryOptions registry;
  registry.repository = o.repository;
  registry.budgets = o.budgets;
  registry.scheduler.workers = o.workers_per_model;
  registry.scheduler.max_queue = o.limits.max_queue_per_model;
  registry.scheduler.batch_max_tokens = o.limits.batch_max_tokens;
  registry.scheduler.batch_max_delay = absl::Microseconds(o.limits.batch_max_delay_us);
  LENSD_ASSIGN_OR_RETURN(s->registry_,
                         ModelRegistry::Create(registry, std::move(factory), s->metrics_.get()));
  s->tenants_ =
      std::make_unique<TenantLimiter>(o.limits.max_requests_per_tenant, o.limits.max_tenant_bytes);
  s->background_ = std::make_unique<Background>();
  s->env_.version = o.version;
  s->env_.min_client_version = o.min_client_version;
  s->env_.limits = o.limits;
  s->env_.tokens = std::move(tokens);
  s->env_.log_requests = o.log_requests;
  s->env_.registry = s->registry_.get();
  s->env_.tenants = s->tenants_.get();
  s->env_.metrics = s->metrics_.get();
  s->env_.background = s->background_.get();
  s->metrics_->Refresh(*s->registry_);
  const std::string checkpoints =
      o.checkpoint_dir.empty() ? (std::filesystem::path(o.state_dir) / "checkpoints").string()
                               : o.checkpoint_dir;
  std::error_code ec;
  std::filesystem::create_directories(checkpoints, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.checkpoint_dir.empty() ? "--state_dir " : "--checkpoint_dir ",
        o.checkpoint_dir.empty() ? o.state_dir : checkpoints, ": cannot create: ", ec.message()));
  }
  LENSD_ASSIGN_OR_RETURN(
      s->job_store_,
      JobStore::Open(o.job_store.empty() ? (std::filesystem::path(o.state_dir) / "jobs.db").string()
                                         : o.job_store));
  s->job_runner_ =
      std::make_unique<TrainingRunner>(s->registry_.get(), o.repository, o.data_root, o.limits);
  JobManagerOptions jobs;
  jobs.devices = {"cpu"};
  for (const auto& [device, bytes] : o.budgets) {
    if (device != "cpu") jobs.devices.push_back(device);
  }
  jobs.jobs_per_device = o.jobs_per_device;
  jobs.max_unfinished_per_tenant = o.max_jobs_per_tenant;
  jobs.worker_nice = o.job_nice;
  jobs.checkpoint_root = checkpoints;
  jobs.owner = o.replica_id;
  jobs.lease = o.job_lease;
  // A lens another replica trained lands in the shared repository: load it here too.
  jobs.finished_elsewhere = [server = s.get()](const JobRecord& job) {
    if (job.kind != "train" || job.state != JobState::kSucceeded) return;
    const nlohmann::json result = nlohmann::json::parse(job.result, nullptr, false);
    const std::string lens = result.is_object() ? result.value("lens", "") : "";
    if (lens.empty()) return;
    server->background_->Run([server, model = job.model, lens] {
      if (!server->registry_->Get(model).ok()) return;  // a model this server does not serve
      absl::StatusOr<LensDescription> loaded = server->registry_->LoadLens(model, lens);
      if (!loaded.ok() && !absl::IsAlreadyExists(loaded.status())) {
        LogIfError(loaded.status(), absl::StrCat("jobs: loading lens ", model, "/", lens,
                                                 " that another server trained"));
      }
    });
  };
  jobs.served_models = [registry = s->registry_.get()] {
    std::vector<std::string> loaded;
    for (const ModelStatus& m : registry->List()) {
      if (m.loaded != nullptr) loaded.push_back(m.name);
    }
    return loaded;
  };
  s->jobs_ = std::make_unique<JobManager>(s->job_store_.get(), s->job_runner_.get(), jobs);
  s->env_.jobs = s->jobs_.get();
  // Device memory and job counts change without a load or an unload: read them at each scrape.
  s->metrics_->OnScrape([server = s.get()] {
    server->metrics_->Refresh(*server->registry_);
    absl::StatusOr<std::map<JobState, int64_t>> counts = server->jobs_->CountByState();
    if (counts.ok()) server->metrics_->Jobs(*counts);
  });
  s->env_.repository = o.repository;
  s->env_.data_root = o.data_root;
  s->env_.cpu_training_precision = o.cpu_training_precision;
  s->env_.models_changed = [server = s.get()] { server->UpdateHealth(); };
  s->models_service_ = std::make_unique<ModelsService>(s->env_);
  s->training_service_ = std::make_unique<TrainingService>(s->env_);
  s->lens_service_ = std::make_unique<LensService>(s->env_);
  s->attribution_service_ = std::make_unique<AttributionService>(s->env_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(o.address, credentials, &s->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(o.limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(o.limits.max_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(o.limits.max_concurrent_streams));
  builder.RegisterService(s->models_service_.get());
  builder.RegisterService(s->lens_service_.get());
  builder.RegisterService(s->attribution_service_.get());
  builder.RegisterService(s->training_service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--address ", o.address, " cannot be listened on (in use or malformed)"));
  }
  s->UpdateHealth();  // every service NOT_SERVING until the startup models are in
  return s;
}

LensdServer::~LensdServer() { Shutdown(absl::Seconds(5)); }

absl::Status LensdServer::LoadStartupModels() {
  for (const StartupModel& m : options_.models) {
    absl::StatusOr<ModelStatus> loaded = registry_->Load(m.name, {m.dtype, m.device});
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("loading model ", m.name, ": ", loaded.status().message()));
    }
  }
  for (const auto& [model, lens] : options_.lenses) {
    absl::StatusOr<LensDescription> loaded = registry_->LoadLens(model, lens);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(), absl::StrCat("loading lens ", model, "/", lens,
                                                               ": ", loaded.status().message()));
    }
  }
  for (const auto& [model, sae] : options_.saes) {
    absl::StatusOr<SaeDescription> loaded = registry_->LoadSae(model, sae, {});
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(), absl::StrCat("loading SAE ", model, "/", sae,
                                                               ": ", loaded.status().message()));
    }
  }
  metrics_->Refresh(*registry_);
  // Jobs start once their models are in: a job left running by an earlier process resumes now.
  LENSD_RETURN_IF_ERROR(jobs_->Start());
  serving_ = true;
  UpdateHealth();
  return absl::OkStatus();
}

void LensdServer::UpdateHealth() {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  const bool up = serving_;
  bool any_model = false;
  for (const ModelStatus& m : registry_->List()) any_model = any_model || m.loaded != nullptr;
  health->SetServingStatus("", up);
  health->SetServingStatus(v1::Models::service_full_name(), up);
  health->SetServingStatus(v1::Training::service_full_name(), up);
  health->SetServingStatus(v1::Lens::service_full_name(), up && any_model);
  health->SetServingStatus(v1::Attribution::service_full_name(), up && any_model);
}

void LensdServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // Scrapes stop reading the registry and the jobs freed below.
  if (metrics_ != nullptr) metrics_->OnScrape({});
  if (server_ != nullptr) {
    serving_ = false;
    UpdateHealth();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  if (jobs_ != nullptr) jobs_->Shutdown();  // running jobs go back to the queue
  background_.reset();
  training_service_.reset();
  jobs_.reset();
  registry_.reset();
}

}  // namespace lensd::server
