// lensd-adversarial-bench: a shared box under attack, measured from outside. The real lensd (its
// own process) serves the demo model to 16 well-behaved tenants sending Decode, first alone, then
// while 4 hostile tenants send the worst the bounds allow: the largest StreamDecode answers
// (read), GetActivations streams of every hook point left unread, 2,000 watches (past their
// bound), and metrics clients that send a byte now and then. The clients run on the same machine.
// Prints the well-behaved tenants' p50/p99 in both phases, what the hostile tenants were refused,
// the server's peak resident memory, and whether it survived; one JSON line last. Not a CTest test
// (it runs ~40 s): run it by hand. Arguments are more lensd flags (e.g. --job_nice=0).
// LENSD_ADVERSARIES=largest,unread,watches,metrics (any subset) runs only those hostile tenants,
// to see what each costs the others.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "core/auth.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "lensd/v1/training.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

namespace v1 = ::lensd::v1;
using Clock = std::chrono::steady_clock;
constexpr int kGood = 16;
constexpr double kPhaseSeconds = 15;

struct Tenants {
  std::vector<std::string> good;
  std::vector<std::string> hostile;
  std::string file;
};

// 16 read tenants, 4 hostile ones with the train role (they may watch jobs), one tokens file.
Tenants MakeTenants(const std::string& dir) {
  Tenants t;
  std::ofstream out(dir + "/adversarial-tokens.txt");
  for (int i = 0; i < kGood; ++i) {
    t.good.push_back(NewToken());
    out << "good" << i << " read " << HashToken(t.good.back()) << "\n";
  }
  for (int i = 0; i < 4; ++i) {
    t.hostile.push_back(NewToken());
    out << "hostile" << i << " train " << HashToken(t.hostile.back()) << "\n";
  }
  t.file = dir + "/adversarial-tokens.txt";
  // 200,000 token ids of the demo vocabulary: the hostile tenant's long training job.
  std::filesystem::create_directories(dir + "/adversarial-data");
  std::vector<uint16_t> ids(200000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint16_t>((i * 2654435761u) % 4096);
  std::ofstream(dir + "/adversarial-data/tokens.u16", std::ios::binary)
      .write(reinterpret_cast<const char*>(ids.data()),
             static_cast<std::streamsize>(ids.size() * sizeof(uint16_t)));
  return t;
}

// Each good tenant sends Decode back to back for `seconds`; every latency in ms.
std::vector<double> GoodLoad(const LensdProcess& server, const Tenants& t, double seconds) {
  std::mutex mu;
  std::vector<double> all;
  std::vector<std::thread> threads;
  threads.reserve(kGood);
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  for (int c = 0; c < kGood; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::Lens::NewStub(server.channel());
      std::vector<double> mine;
      v1::DecodeRequest r;
      r.set_model("kjv-gpt2");
      r.mutable_input()->set_text("And God said, Let there be light: and there was light.");
      r.set_top_k(5);
      while (Clock::now() < until) {
        v1::DecodeResponse out;
        const auto start = Clock::now();
        if (stub->Decode(Context(t.good[static_cast<size_t>(c)], 10).get(), r, &out).ok()) {
          mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : threads) th.join();
  std::sort(all.begin(), all.end());
  return all;
}

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1,
                         static_cast<size_t>(q * static_cast<double>(sorted.size())))];
}

// The hostile tenants, until `stop`; refusals counted by code.
class Hostile {
 public:
  Hostile(const LensdProcess& server, const Tenants& t) : server_(server), t_(t) {}

  void Start() {
    const char* only = std::getenv("LENSD_ADVERSARIES");
    const auto on = [only](const std::string& name) {
      if (only == nullptr) return true;
      for (const absl::string_view n : absl::StrSplit(only, ',')) {
        if (n == name) return true;
      }
      return false;
    };
    if (on("largest")) threads_.emplace_back([this] { LargestAnswers(t_.hostile[0]); });
    if (on("unread")) threads_.emplace_back([this] { UnreadStreams(t_.hostile[1]); });
    if (on("watches")) threads_.emplace_back([this] { Watches(t_.hostile[2]); });
    if (on("metrics")) threads_.emplace_back([this] { SlowMetrics(); });
  }
  void Stop() {
    stop_ = true;
    for (auto& th : threads_) th.join();
  }
  std::map<std::string, int> refused() {
    std::lock_guard<std::mutex> lock(mu_);
    return refused_;
  }

 private:
  void Count(const std::string& what, const grpc::Status& s) {
    if (s.ok()) return;
    std::lock_guard<std::mutex> lock(mu_);
    ++refused_[what + " " + std::to_string(s.error_code())];
  }

  // StreamDecode of the longest input (every row's full log-probabilities, 29 MB), read.
  void LargestAnswers(const std::string& token) {
    auto stub = v1::Lens::NewStub(server_.channel());
    v1::DecodeRequest r;
    r.set_model("kjv-gpt2");
    for (int i = 0; i < 256; ++i) r.mutable_input()->mutable_tokens()->add_ids(100 + i % 50);
    r.set_top_k(64);
    while (!stop_) {
      auto context = Context(token, 30);
      auto reader = stub->StreamDecode(context.get(), r);
      v1::StreamDecodeResponse part;
      while (reader->Read(&part)) {
      }
      Count("StreamDecode", reader->Finish());
    }
  }

  // GetActivations of every hook point, never read, as many as the tenant may have in flight.
  void UnreadStreams(const std::string& token) {
    auto models = v1::Models::NewStub(server_.channel());
    v1::GetModelRequest get;
    get.set_model("kjv-gpt2");
    v1::ModelInfo info;
    (void)models->GetModel(Context(token).get(), get, &info);
    v1::GetActivationsRequest r;
    r.set_model("kjv-gpt2");
    for (int i = 0; i < 256; ++i) r.mutable_input()->mutable_tokens()->add_ids(100 + i % 50);
    for (int i = 0; i < std::min(info.hook_points_size(), 64); ++i) {
      r.add_hook_points(info.hook_points(i));
    }
    auto stub = v1::Lens::NewStub(server_.channel());
    std::vector<std::pair<std::unique_ptr<grpc::ClientContext>,
                          std::unique_ptr<grpc::ClientReader<v1::TensorChunk>>>>
        open;
    while (!stop_ && open.size() < 100) {
      auto context = Context(token, 60);
      auto reader = stub->GetActivations(context.get(), r);
      open.emplace_back(std::move(context), std::move(reader));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (auto& [context, reader] : open) {
      context->TryCancel();
      Count("GetActivations", reader->Finish());
    }
  }

  // A long job, and watches of it until the tenant's bound refuses them.
  void Watches(const std::string& token) {
    auto training = v1::Training::NewStub(server_.channel());
    v1::SubmitJobRequest submit;
    submit.set_model("kjv-gpt2");
    v1::TrainLensJob* job = submit.mutable_train_lens();
    job->set_lens_name("adversarial");
    job->mutable_data()->set_path("tokens.u16");  // MakeTenants writes it into the data root
    job->set_num_steps(5000);                     // longer than the run
    job->set_seq_len(16);
    job->set_tokens_per_step(32);
    v1::Job submitted;
    Count("SubmitJob", training->SubmitJob(Context(token).get(), submit, &submitted));
    std::this_thread::sleep_for(std::chrono::seconds(1));
    v1::GetJobRequest get;
    get.set_id(submitted.id());
    v1::Job now;
    (void)training->GetJob(Context(token).get(), get, &now);
    if (now.state() != v1::JOB_STATE_RUNNING) {
      std::fprintf(stderr, "the hostile job is not running: %s\n", now.reason().c_str());
    }
    v1::WatchJobRequest watch;
    watch.set_id(submitted.id());
    std::vector<std::pair<std::unique_ptr<grpc::ClientContext>,
                          std::unique_ptr<grpc::ClientReader<v1::Job>>>>
        open;
    for (int i = 0; i < 2000 && !stop_; ++i) {
      auto context = Context(token, 120);
      auto reader = training->WatchJob(context.get(), watch);
      v1::Job first;
      if (!reader->Read(&first)) {  // refused: its status now, not a cancel's
        Count("WatchJob", reader->Finish());
        continue;
      }
      open.emplace_back(std::move(context), std::move(reader));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      watches_open_ = static_cast<int>(open.size());
    }
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    v1::CancelJobRequest cancel;
    cancel.set_id(submitted.id());
    v1::Job out;
    (void)training->CancelJob(Context(token).get(), cancel, &out);
    for (auto& [context, reader] : open) {
      context->TryCancel();
      (void)reader->Finish();
    }
  }

  // 30 /metrics connections (the endpoint takes 32 per client address) that send a byte every
  // 0.9 s.
  void SlowMetrics() {
    std::vector<int> fds;
    for (int i = 0; i < 30; ++i) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(server_.metrics_port()));
      inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
      if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) fds.push_back(fd);
    }
    while (!stop_) {
      for (const int fd : fds) (void)send(fd, "G", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(900));
    }
    for (const int fd : fds) close(fd);
  }

  const LensdProcess& server_;
  const Tenants& t_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::string, int> refused_;
  int watches_open_ = 0;

 public:
  int watches_open() {
    std::lock_guard<std::mutex> lock(mu_);
    return watches_open_;
  }
};

int Main(const std::vector<std::string>& extra_flags) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const Tenants tenants = MakeTenants(dir);
  std::vector<std::string> flags = {
      "--models=kjv-gpt2", "--tokens_file=" + tenants.file, "--log_requests=false",
      "--data_root=" + dir + "/adversarial-data", "--max_concurrent_streams=4096"};
  flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
  LensdProcess server(flags);
  (void)GoodLoad(server, tenants, 2);  // warm up
  const std::vector<double> alone = GoodLoad(server, tenants, kPhaseSeconds);
  const int64_t rss_alone = server.ResidentBytes();

  Hostile hostile(server, tenants);
  hostile.Start();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the attack under way
  std::atomic<bool> sampling{true};
  std::atomic<int64_t> peak{0};
  std::thread sampler([&] {
    while (sampling) {
      peak = std::max(peak.load(), server.ResidentBytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const std::vector<double> attacked = GoodLoad(server, tenants, kPhaseSeconds);
  const std::string scrape = server.Scrape();
  hostile.Stop();
  sampling = false;
  sampler.join();
  const bool alive = server.ResidentBytes() > 0 && server.Health() == "SERVING";

  std::printf("16 well-behaved tenants, Decode (demo model, 14 tokens, top-5), %.0f s each phase\n",
              kPhaseSeconds);
  std::printf("%-22s %8s %10s %10s\n", "phase", "calls", "p50 ms", "p99 ms");
  std::printf("%-22s %8zu %10.1f %10.1f\n", "alone", alone.size(), Quantile(alone, 0.5),
              Quantile(alone, 0.99));
  std::printf("%-22s %8zu %10.1f %10.1f\n", "beside 4 hostile", attacked.size(),
              Quantile(attacked, 0.5), Quantile(attacked, 0.99));
  const double ratio = Quantile(attacked, 0.99) / std::max(Quantile(alone, 0.99), 1e-9);
  std::printf("p99 ratio %.2f (goal <= 2)\n", ratio);
  std::printf("hostile refusals (method code: count):");
  nlohmann::json refusals = nlohmann::json::object();
  for (const auto& [what, count] : hostile.refused()) {
    std::printf(" [%s: %d]", what.c_str(), count);
    refusals[what] = count;
  }
  std::printf("\nwatches the hostile tenant holds open: %d of 2,000 asked\n",
              hostile.watches_open());
  std::printf(
      "resident memory %.0f MiB alone, peak %.0f MiB under attack; a scrape under attack %s; "
      "server %s\n",
      static_cast<double>(rss_alone) / (1 << 20), static_cast<double>(peak.load()) / (1 << 20),
      scrape.find("200 OK") != std::string::npos ? "answered" : "FAILED",
      alive ? "alive and SERVING" : "DOWN");
  std::printf("%s\n", nlohmann::json{{"p99_alone_ms", Quantile(alone, 0.99)},
                                     {"p99_attacked_ms", Quantile(attacked, 0.99)},
                                     {"p99_ratio", ratio},
                                     {"peak_rss_mib", static_cast<double>(peak.load()) / (1 << 20)},
                                     {"refusals", refusals},
                                     {"alive", alive}}
                          .dump()
                          .c_str());
  return alive ? 0 : 1;
}

}  // namespace
}  // namespace lensd::e2e

int main(int argc, char** argv) { return lensd::e2e::Main({argv + 1, argv + argc}); }
