// lensd: the gRPC server. `lensd --help` lists the flags; `lensd token --tenant T --role R`
// makes a token and its tokens-file line. Flags may also come from a file: --flagfile=lensd.flags
// (one --flag=value per line).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/auth.h"
#include "core/engine/served/engine_factory.h"
#include "core/memory_budget.h"
#include "core/status_macros.h"
#include "server/server.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051",
          "where to listen (host:port; port 0 picks a free one). Anything but loopback or a unix "
          "socket needs --tokens_file or --allow_unauthenticated_remote");
ABSL_FLAG(std::string, model_repository, "deploy/models",
          "folder of model folders: <model>/config.json, weights, tokenizer.json, lenses/<lens>/, "
          "saes/<sae>/");
ABSL_FLAG(std::vector<std::string>, models, {},
          "models to load at start: name[:dtype[:device]], comma-separated (e.g. "
          "kjv-gpt2,llama:bfloat16:cuda:0)");
ABSL_FLAG(
    std::vector<std::string>, lenses, {},
    "tuned lenses to load at start: model/lens, comma-separated (from <model>/lenses/<lens>)");
ABSL_FLAG(std::vector<std::string>, saes, {},
          "SAEs to attach at start: model/sae, comma-separated (from <model>/saes/<sae>, SAELens "
          "or sparsify folders)");
ABSL_FLAG(std::string, tokens_file, "",
          "bearer tokens file (lines '<tenant> <role> sha256:<hex>'); empty turns auth off");
ABSL_FLAG(bool, allow_unauthenticated_remote, false,
          "serve a non-loopback --address without --tokens_file (anyone who can connect can "
          "load and unload models)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key turns TLS on");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates; set: mutual TLS, clients must present a certificate it signed");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:0",
          "Prometheus /metrics endpoint (host:port; port 0, the default, picks a free one, which "
          "the startup line and --port_file name: set a fixed port for a scrape config); empty "
          "turns it off");
ABSL_FLAG(std::vector<std::string>, memory_budget, {"cpu=0.75"},
          "bytes of weights per device, device=size, comma-separated: sizes like 16GiB, 512MiB, "
          "2e9, or a fraction of the device's memory (0.75). Devices not named get 0.9");
ABSL_FLAG(int, workers_per_model, 1, "threads running each model's work");
ABSL_FLAG(std::string, state_dir, "",
          "folder of the job database (jobs.db) and training checkpoints; jobs survive restarts. "
          "Default: $XDG_STATE_HOME/lensd, else $HOME/.local/state/lensd (/var/lib/lensd as root)");
ABSL_FLAG(std::string, job_store, "",
          "where jobs are kept: empty for <state_dir>/jobs.db (SQLite, this server's alone), or a "
          "PostgreSQL URI (postgresql://user@host:5432/db; the password from $PGPASSWORD or "
          "~/.pgpass) that several servers share: a job submitted to one runs on any that serves "
          "its model, and resumes on another if its server dies");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "folder of training checkpoints (default <state_dir>/checkpoints); servers sharing a "
          "job store need one folder on shared storage, at the same path");
ABSL_FLAG(std::string, replica_id, "",
          "this server's name among those sharing a job store, unique among them (default: "
          "<host name>-<pid>); a server restarted under the same name takes the jobs it held back "
          "at once, under a new one they wait for their leases to run out");
ABSL_FLAG(int64_t, job_lease_seconds, 30,
          "how long a server's hold on a running job lasts without renewal (renewed 4 times a "
          "second): after its server dies, another takes the job over this much later");
ABSL_FLAG(std::string, data_root, "",
          "folder training data is read from (.jsonl, .txt, .u16, .u32); paths outside it are "
          "refused; empty: inline texts only");
ABSL_FLAG(int, jobs_per_device, 1, "training jobs running at once on one device");
ABSL_FLAG(int, max_jobs_per_tenant, 8, "unfinished training jobs one tenant may have");
ABSL_FLAG(int, job_nice, 10,
          "nice value of the threads running jobs (0..19): above 0, training, evaluation and "
          "patching jobs yield the CPU to serving calls when both want it; 0: same priority");
ABSL_FLAG(int, intra_op_threads, 0, "CPU threads per libtorch op (0: one per core)");
ABSL_FLAG(
    std::string, cpu_precision, "auto",
    "what training precision \"auto\" means on the CPU: auto (bfloat16 autocast where the CPU "
    "has bfloat16 arithmetic, as tuned-lens trains on a GPU; else float32), float32, bfloat16");
ABSL_FLAG(int64_t, max_tokens_per_request, 4096, "most input tokens in one request");
ABSL_FLAG(int64_t, max_new_tokens, 1024, "most new tokens one Generate request may ask for");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20, "largest gRPC message received or sent");
ABSL_FLAG(int64_t, max_concurrent_streams, 128, "most concurrent calls per connection");
ABSL_FLAG(int64_t, max_stream_buffer_bytes, 256 << 20,
          "unread bytes one stream (StreamDecode, GetActivations, Generate) may queue; past it the "
          "call fails RESOURCE_EXHAUSTED (the model's worker never waits for a slow reader)");
ABSL_FLAG(int64_t, max_request_bytes, int64_t{4} << 30,
          "most bytes one request's answer or work may cost, estimated before it starts (rows x "
          "positions x top_k, hook tensors, SAE features, attribution nodes); past it the call "
          "fails RESOURCE_EXHAUSTED naming the estimate");
ABSL_FLAG(int64_t, max_tenant_bytes, int64_t{8} << 30,
          "most bytes the estimated costs of one tenant's requests in flight may add up to");
ABSL_FLAG(int64_t, max_watches_per_tenant, 64,
          "WatchJob streams one tenant may hold open (all are served by one thread)");
ABSL_FLAG(int64_t, max_patching_cells, 100000,
          "most patched runs (cells) one ActivationPatching request may ask for");
ABSL_FLAG(int64_t, max_queue_per_model, 256, "most requests waiting in one model's queue");
ABSL_FLAG(int64_t, max_requests_per_tenant, 64,
          "most requests one tenant may have queued or running at once");
ABSL_FLAG(int64_t, batch_max_tokens, 4096, "most tokens in one batch of Decode requests");
ABSL_FLAG(int64_t, batch_max_delay_us, 2000,
          "how long a Decode request waits for others to batch with, in microseconds (only while "
          "requests arrive concurrently)");
ABSL_FLAG(int64_t, shutdown_grace_seconds, 5,
          "on SIGTERM or SIGINT: seconds calls in flight get to finish (new ones are refused at "
          "once, health turns NOT_SERVING) before they are cancelled and running jobs requeued");
ABSL_FLAG(std::string, min_client_version, "0.1.0",
          "oldest client version served (clients send x-lensd-client-version)");
ABSL_FLAG(bool, log_requests, true, "one JSON line per request on stderr");
ABSL_FLAG(std::string, port_file, "",
          "write {\"port\": ..., \"metrics_port\": ...} here once listening (for scripts)");
ABSL_FLAG(std::string, tenant, "", "lensd token: the tenant name");
ABSL_FLAG(std::string, role, "read", "lensd token: read, train or admin");

namespace {

// Where jobs live when --state_dir is not given: the XDG state folder (not the current one).
std::string DefaultStateDir() {
  if (geteuid() == 0) return "/var/lib/lensd";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::string(xdg) + "/lensd";
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.local/state/lensd";
}

constexpr char kVersion[] = "0.1.0";

int MakeToken() {
  const std::string tenant = absl::GetFlag(FLAGS_tenant);
  const absl::StatusOr<lensd::Role> role = lensd::ParseRole(absl::GetFlag(FLAGS_role));
  if (tenant.empty() || tenant.find_first_of(" \t\n") != std::string::npos || !role.ok()) {
    std::cerr << "lensd token: give --tenant (no spaces) and --role (read, train or admin)\n";
    return 2;
  }
  const std::string token = lensd::NewToken();
  std::cout << "token: " << token << "\n"
            << "tokens file line: " << tenant << " " << lensd::RoleName(*role) << " "
            << lensd::HashToken(token) << "\n";
  return 0;
}

absl::StatusOr<lensd::server::ServerOptions> OptionsFromFlags() {
  lensd::server::ServerOptions o;
  o.address = absl::GetFlag(FLAGS_address);
  o.repository = absl::GetFlag(FLAGS_model_repository);
  for (const std::string& spec : absl::GetFlag(FLAGS_models)) {
    const std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 2));
    o.models.push_back(
        {parts[0], parts.size() > 1 ? parts[1] : "", parts.size() > 2 ? parts[2] : ""});
  }
  // "model/name" pairs of --lenses and --saes.
  const auto pairs = [](const char* flag, const char* what, const std::vector<std::string>& specs,
                        std::vector<std::pair<std::string, std::string>>* out) -> absl::Status {
    for (const std::string& spec : specs) {
      const std::vector<std::string> parts = absl::StrSplit(spec, '/');
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", flag, ": \"", spec, "\" is not model/", what));
      }
      out->emplace_back(parts[0], parts[1]);
    }
    return absl::OkStatus();
  };
  LENSD_RETURN_IF_ERROR(pairs("lenses", "lens", absl::GetFlag(FLAGS_lenses), &o.lenses));
  LENSD_RETURN_IF_ERROR(pairs("saes", "sae", absl::GetFlag(FLAGS_saes), &o.saes));
  o.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  o.allow_unauthenticated_remote = absl::GetFlag(FLAGS_allow_unauthenticated_remote);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  o.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  for (const std::string& device : lensd::engine::AvailableDevices()) {
    o.budgets[device] = static_cast<int64_t>(0.9 * lensd::engine::DeviceTotalBytes(device));
  }
  for (const std::string& spec : absl::GetFlag(FLAGS_memory_budget)) {
    const std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--memory_budget: \"", spec, "\" is not device=size"));
    }
    absl::StatusOr<std::string> device = lensd::engine::CanonicalDevice(parts[0]);
    if (!device.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--memory_budget: ", device.status().message()));
    }
    absl::StatusOr<int64_t> bytes =
        lensd::ParseBytes(parts[1], lensd::engine::DeviceTotalBytes(*device));
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--memory_budget: ", bytes.status().message()));
    }
    o.budgets[*device] = *bytes;
  }
  o.workers_per_model = absl::GetFlag(FLAGS_workers_per_model);
  o.state_dir = absl::GetFlag(FLAGS_state_dir);
  if (o.state_dir.empty()) o.state_dir = DefaultStateDir();
  o.data_root = absl::GetFlag(FLAGS_data_root);
  o.job_store = absl::GetFlag(FLAGS_job_store);
  o.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  o.replica_id = absl::GetFlag(FLAGS_replica_id);
  if (o.replica_id.empty()) {
    char host[256] = {};
    o.replica_id = absl::StrCat(
        gethostname(host, sizeof(host) - 1) == 0 && host[0] != 0 ? host : "lensd", "-", getpid());
  }
  if (absl::GetFlag(FLAGS_job_lease_seconds) < 1) {
    return absl::InvalidArgumentError("--job_lease_seconds: give 1 or more");
  }
  o.job_lease = absl::Seconds(absl::GetFlag(FLAGS_job_lease_seconds));
  o.jobs_per_device = absl::GetFlag(FLAGS_jobs_per_device);
  o.max_jobs_per_tenant = absl::GetFlag(FLAGS_max_jobs_per_tenant);
  o.job_nice = absl::GetFlag(FLAGS_job_nice);
  lensd::server::Limits& l = o.limits;
  l.max_tokens_per_request = absl::GetFlag(FLAGS_max_tokens_per_request);
  l.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  l.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  l.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  l.max_stream_buffer_bytes = absl::GetFlag(FLAGS_max_stream_buffer_bytes);
  if (l.max_stream_buffer_bytes < (1 << 20)) {
    return absl::InvalidArgumentError("--max_stream_buffer_bytes must be at least 1 MiB (1048576)");
  }
  l.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  l.max_tenant_bytes = absl::GetFlag(FLAGS_max_tenant_bytes);
  if (l.max_request_bytes < (1 << 20) || l.max_tenant_bytes < l.max_request_bytes) {
    return absl::InvalidArgumentError(
        "--max_request_bytes must be at least 1 MiB and --max_tenant_bytes at least "
        "--max_request_bytes");
  }
  l.max_watches_per_tenant = absl::GetFlag(FLAGS_max_watches_per_tenant);
  l.max_patching_cells = absl::GetFlag(FLAGS_max_patching_cells);
  l.max_queue_per_model = absl::GetFlag(FLAGS_max_queue_per_model);
  l.max_requests_per_tenant = absl::GetFlag(FLAGS_max_requests_per_tenant);
  l.batch_max_tokens = absl::GetFlag(FLAGS_batch_max_tokens);
  l.batch_max_delay_us = absl::GetFlag(FLAGS_batch_max_delay_us);
  o.version = kVersion;
  o.min_client_version = absl::GetFlag(FLAGS_min_client_version);
  o.log_requests = absl::GetFlag(FLAGS_log_requests);
  return o;
}
}  // namespace

int main(int argc, char** argv) {
  lensd::engine::UsePassiveOpenMpWaits(argv);
  // --help lists the flags of this file (absl's default looks for a file named after the binary
  // and printed "No flags matched").
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "lensd: serves per-layer decoding (logit and tuned lenses), generation from a lens, SAE "
      "features, node and layer attribution, and activation capture over gRPC.\n\n  lensd "
      "--models=kjv-gpt2 --tokens_file=tokens.txt\n"
      "  lensd token --tenant=alice --role=admin   (prints a new token and its tokens-file "
      "line)\n\n"
      "Flags may also come from a file with --flagfile=<file>.");
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1 && std::string(args[1]) == "token") return MakeToken();
  if (args.size() > 1) {
    std::cerr << "lensd: unknown argument " << args[1] << " (see --help)\n";
    return 2;
  }
  // Signals are taken by one thread with sigwait; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<lensd::server::ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::cerr << "lensd: " << options.status().message() << "\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_shutdown_grace_seconds) < 0) {
    std::cerr << "lensd: --shutdown_grace_seconds: give 0 or more seconds\n";
    return 2;
  }
  lensd::engine::ConfigureRuntime(absl::GetFlag(FLAGS_intra_op_threads));
  if (const absl::Status s = lensd::engine::SetCpuPrecision(absl::GetFlag(FLAGS_cpu_precision));
      !s.ok()) {
    std::cerr << "lensd: --cpu_precision: " << s.message() << "\n";
    return 2;
  }
  options->cpu_training_precision = lensd::engine::CpuPrecision();
  auto server = lensd::server::LensdServer::Start(*options, lensd::engine::EngineModelFactory());
  if (!server.ok()) {
    std::cerr << "lensd: " << server.status().message() << "\n";
    return 2;
  }
  std::cerr << "lensd " << kVersion << " listening on " << options->address << " (port "
            << (*server)->port() << "), metrics on port " << (*server)->metrics_port()
            << (options->tokens_file.empty() ? ", auth off" : ", auth on") << "\n";
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    std::ofstream(path + ".tmp") << "{\"port\": " << (*server)->port()
                                 << ", \"metrics_port\": " << (*server)->metrics_port() << "}\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  int exit_code = 0;
  std::thread loader([&] {
    const absl::Status s = (*server)->LoadStartupModels();
    if (!s.ok()) {
      std::cerr << "lensd: " << s.message() << "\n";
      exit_code = 1;
      kill(getpid(), SIGTERM);
      return;
    }
    std::cerr << "lensd: serving " << options->models.size() << " model(s)"
              << "\n";
  });
  int signal = 0;
  sigwait(&signals, &signal);
  loader.join();
  std::cerr << "lensd: shutting down (signal " << signal << ")"
            << "\n";
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds)));
  return exit_code;
}
