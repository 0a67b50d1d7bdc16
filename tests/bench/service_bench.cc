// lensd-service-bench: what the service costs and what batching gains, in one run on one machine.
//   1. the engine called directly (ServedModel::Decode, one request at a time): the floor;
//   2. the real server (LensdServer on loopback TCP, in this process; request log off) called by
//      1 client, then by 16 and 64 concurrent clients, each a tenant of its own (bearer tokens;
//      --tenant_per_client=false: auth off, one tenant), each waiting for its answer before the
//      next call.
// Throughput: every call is the same Decode (all layers, top-5, default statistics) of a fixed
// token prompt. Per-call overhead: a small Decode (one layer, the last position, top-1, of a short
// prompt), so that the engine's share does not drown the service's, direct vs 1 client.
// Prints a table and one JSON line.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/auth.h"
#include "core/engine/served/engine_factory.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/convert.h"
#include "server/server.h"

ABSL_FLAG(std::string, repository, "deploy/models", "model repository");
ABSL_FLAG(std::string, model, "kjv-gpt2", "model to serve (the demo model by default)");
ABSL_FLAG(int, prompt_tokens, 24, "tokens per prompt");
ABSL_FLAG(int, requests, 1500, "Decode calls per measurement");
ABSL_FLAG(std::vector<std::string>, clients, std::vector<std::string>({"1", "16", "64"}),
          "concurrent clients of each service measurement");
ABSL_FLAG(bool, tenant_per_client, true,
          "each client is a tenant of its own (auth on, one token each); false: auth off, one "
          "tenant for all");
ABSL_FLAG(int, small_tokens, 4, "tokens of the small Decode that measures per-call overhead");
ABSL_FLAG(int64_t, batch_max_delay_us, 2000, "the server's batching delay");
ABSL_FLAG(int, workers_per_model, 1, "the server's threads running the model's work");
ABSL_FLAG(int, intra_op_threads, 0, "CPU threads per libtorch op (0: one per core), as lensd's");

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = ::lensd::v1;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

v1::DecodeRequest Request(const std::string& model, const std::vector<int64_t>& tokens) {
  v1::DecodeRequest r;
  r.set_model(model);
  for (const int64_t t : tokens) r.mutable_input()->mutable_tokens()->add_ids(t);
  return r;
}

struct Measured {
  double calls_per_s = 0;
  double mean_latency_us = 0;
  double mean_batch = 0;
};

Measured Direct(const lensd::ServedModel& model, const lensd::DecodeSpec& spec, int requests) {
  const lensd::DecodeSpec* batch[] = {&spec};
  const auto keep_going = [] { return absl::OkStatus(); };
  const auto run = [&] {
    auto out = model.Decode(batch, keep_going, nullptr);
    if (!out.ok()) std::cerr << out.status() << "\n", std::exit(1);
  };
  for (int i = 0; i < 20; ++i) run();  // warm-up
  const auto start = Clock::now();
  for (int i = 0; i < requests; ++i) run();
  const double seconds = Since(start);
  return {requests / seconds, seconds / requests * 1e6, 1};
}

// `tokens`: client c sends tokens[c % size] (none: auth off).
Measured Service(const std::shared_ptr<grpc::Channel>& channel, const v1::DecodeRequest& request,
                 int clients, int requests, const std::vector<std::string>& tokens) {
  std::atomic<int> next{0};
  std::atomic<int64_t> batch_sum{0};
  std::atomic<int64_t> latency_ns{0};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(clients));
  const auto start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::Lens::NewStub(channel);
      for (int i = next++; i < requests; i = next++) {
        grpc::ClientContext context;
        if (!tokens.empty()) {
          context.AddMetadata("authorization",
                              "Bearer " + tokens[static_cast<size_t>(c) % tokens.size()]);
        }
        v1::DecodeResponse out;
        const auto sent = Clock::now();
        const grpc::Status s = stub->Decode(&context, request, &out);
        if (!s.ok()) std::cerr << s.error_message() << "\n", std::exit(1);
        latency_ns +=
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent).count();
        batch_sum += out.batch_size();
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = Since(start);
  return {requests / seconds, static_cast<double>(latency_ns) / requests / 1e3,
          static_cast<double>(batch_sum) / requests};
}

}  // namespace

int main(int argc, char** argv) {
  lensd::engine::UsePassiveOpenMpWaits(argv);  // as lensd does
  absl::SetProgramUsageMessage(
      "Measures Decode through the lensd service (1 and 16 clients) against the engine called "
      "directly: lensd-service-bench --repository deploy/models --model kjv-gpt2");
  absl::ParseCommandLine(argc, argv);
  lensd::engine::ConfigureRuntime(absl::GetFlag(FLAGS_intra_op_threads));
  const std::string repository = absl::GetFlag(FLAGS_repository);
  const std::string name = absl::GetFlag(FLAGS_model);
  const int requests = absl::GetFlag(FLAGS_requests);

  std::vector<int64_t> tokens;
  tokens.reserve(static_cast<size_t>(absl::GetFlag(FLAGS_prompt_tokens)));
  for (int i = 0; i < absl::GetFlag(FLAGS_prompt_tokens); ++i) tokens.push_back(17 + 37 * i);
  const v1::DecodeRequest request = Request(name, tokens);
  auto spec = lensd::server::ToDecodeSpec(request, tokens);
  const std::vector<int64_t> small_tokens(tokens.begin(),
                                          tokens.begin() + absl::GetFlag(FLAGS_small_tokens));
  v1::DecodeRequest small = Request(name, small_tokens);
  small.add_layers(0);
  small.add_positions(static_cast<int64_t>(small_tokens.size()) - 1);
  small.set_top_k(1);
  small.set_exclude_output(true);
  auto small_spec = lensd::server::ToDecodeSpec(small, small_tokens);
  auto direct_model = lensd::engine::LoadServedModel(repository + "/" + name, {});
  for (const absl::Status& s : {spec.status(), small_spec.status(), direct_model.status()}) {
    if (!s.ok()) return std::cerr << s << "\n", 1;
  }
  const Measured direct = Direct(**direct_model, *spec, requests);
  const Measured direct_small = Direct(**direct_model, *small_spec, requests);
  direct_model->reset();

  lensd::server::ServerOptions options;
  options.address = "127.0.0.1:0";
  options.repository = repository;
  options.models.push_back({name, "", ""});
  options.metrics_address = "";
  options.budgets["cpu"] = lensd::engine::DeviceTotalBytes("cpu") / 2;
  options.log_requests = false;
  // Jobs are not used; their store goes to a temporary folder, not the current one.
  options.state_dir = std::filesystem::temp_directory_path() / "lensd-service-bench-state";
  options.version = "bench";
  options.limits.max_requests_per_tenant = 1024;
  options.limits.batch_max_delay_us = absl::GetFlag(FLAGS_batch_max_delay_us);
  options.workers_per_model = absl::GetFlag(FLAGS_workers_per_model);
  std::vector<std::string> bearer;
  if (absl::GetFlag(FLAGS_tenant_per_client)) {
    int most = 1;
    for (const std::string& text : absl::GetFlag(FLAGS_clients))
      most = std::max(most, std::stoi(text));
    options.tokens_file = std::filesystem::temp_directory_path() / "lensd-service-bench-tokens.txt";
    std::ofstream file(options.tokens_file);
    for (int t = 0; t < most; ++t) {
      bearer.push_back(lensd::NewToken());
      file << "tenant" << t << " read " << lensd::HashToken(bearer.back()) << "\n";
    }
  }
  auto server = lensd::server::LensdServer::Start(options, lensd::engine::EngineModelFactory());
  if (!server.ok() || !(*server)->LoadStartupModels().ok()) {
    std::cerr << "cannot start the server\n";
    return 1;
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  const auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                                 grpc::InsecureChannelCredentials(), args);
  Service(channel, request, 1, 50, bearer);  // warm-up

  nlohmann::json result = {{"model", name},
                           {"prompt_tokens", tokens.size()},
                           {"requests", requests},
                           {"direct_calls_per_s", direct.calls_per_s},
                           {"direct_latency_us", direct.mean_latency_us}};
  std::printf("%-36s %12s %14s %10s\n", ("Decode, " + name).c_str(), "calls/s", "latency (us)",
              "batch");
  std::printf("%-36s %12.1f %14.0f %10s\n", "engine, direct", direct.calls_per_s,
              direct.mean_latency_us, "1");
  Measured one;
  for (const std::string& text : absl::GetFlag(FLAGS_clients)) {
    const int clients = std::stoi(text);
    const Measured m = Service(channel, request, clients, requests, bearer);
    if (clients == 1) one = m;
    std::printf("%-36s %12.1f %14.0f %10.2f\n",
                ("service, " + text + (clients == 1 ? " client" : " clients") +
                 (bearer.empty() || clients == 1 ? "" : " (tenants)"))
                    .c_str(),
                m.calls_per_s, m.mean_latency_us, m.mean_batch);
    result["service"][text] = {{"calls_per_s", m.calls_per_s},
                               {"latency_us", m.mean_latency_us},
                               {"mean_batch", m.mean_batch}};
    if (clients > 1 && one.calls_per_s > 0) {
      std::printf("  batching gain at %d clients: x%.2f calls/s over 1 client\n", clients,
                  m.calls_per_s / one.calls_per_s);
    }
  }
  const Measured service_small = Service(channel, small, 1, requests, bearer);
  const double overhead = service_small.mean_latency_us - direct_small.mean_latency_us;
  std::printf("\n%-36s %12s %14s\n", "small Decode", "calls/s", "latency (us)");
  std::printf("%-36s %12.1f %14.0f\n", "engine, direct", direct_small.calls_per_s,
              direct_small.mean_latency_us);
  std::printf("%-36s %12.1f %14.0f\n", "service, 1 client", service_small.calls_per_s,
              service_small.mean_latency_us);
  std::printf("  per-call service overhead: %.0f us\n", overhead);
  result["small_direct_latency_us"] = direct_small.mean_latency_us;
  result["small_service_latency_us"] = service_small.mean_latency_us;
  result["overhead_us"] = overhead;
  std::cout << result.dump() << "\n";
  (*server)->Shutdown(absl::Seconds(1));
  return 0;
}
