// The fixture of the job e2e tests: a private repository (the demo model's files linked, its
// lenses folder the server's to write), a data root with 60,000 random demo-vocabulary token ids
// (tokens.u16) and a malformed .jsonl, and helpers to start lensd, submit and wait for jobs.
#ifndef LENSD_TESTS_E2E_TRAINING_FIXTURE_H_
#define LENSD_TESTS_E2E_TRAINING_FIXTURE_H_

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "lensd/v1/training.grpc.pb.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {

namespace v1 = ::lensd::v1;
namespace fs = std::filesystem;

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TrainingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lensd-train-e2e-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    // 60,000 random token ids of the demo vocabulary (a .u16 file) for long jobs.
    std::mt19937 rng(5);
    std::vector<uint16_t> ids(60000);
    for (uint16_t& id : ids) id = static_cast<uint16_t>(rng() % 4096);
    std::ofstream(dir_ / "data" / "tokens.u16", std::ios::binary)
        .write(reinterpret_cast<const char*>(ids.data()),
               static_cast<std::streamsize>(ids.size() * 2));
    std::ofstream(dir_ / "data" / "bad.jsonl") << "{\"text\": \"ok\"}\n{\"text\": 7}\n";
    // Lenses are written into the repository: a private copy of the demo model's folder.
    fs::create_directories(dir_ / "repo" / "kjv-gpt2");
    for (const auto& f : fs::directory_iterator(LENSD_E2E_REPOSITORY "/kjv-gpt2")) {
      if (f.path().filename() != "lenses") {
        fs::create_symlink(fs::canonical(f.path()),
                           dir_ / "repo" / "kjv-gpt2" / f.path().filename());
      }
    }
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  void StartServer(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> flags{
        "--models=kjv-gpt2", "--model_repository=" + (dir_ / "repo").string(),
        "--data_root=" + (dir_ / "data").string(), "--state_dir=" + (dir_ / "state").string()};
    flags.insert(flags.end(), extra.begin(), extra.end());
    server_ = std::make_unique<LensdProcess>(flags);
  }
  std::unique_ptr<v1::Training::Stub> training() {
    return v1::Training::NewStub(server_->channel());
  }
  static v1::SubmitJobRequest Job(const std::string& lens, int64_t steps) {
    v1::SubmitJobRequest r;
    r.set_model("kjv-gpt2");
    v1::TrainLensJob* t = r.mutable_train_lens();
    t->set_lens_name(lens);
    t->mutable_data()->set_path("tokens.u16");
    t->set_num_steps(steps);
    t->set_seq_len(16);
    t->set_tokens_per_step(32);
    t->set_checkpoint_every(5);
    return r;
  }
  grpc::Status Submit(const v1::SubmitJobRequest& r, v1::Job* job, const std::string& token = "") {
    return training()->SubmitJob(Context(token.empty() ? server_->admin_token() : token).get(), r,
                                 job);
  }
  v1::Job Get(const std::string& id) {
    v1::GetJobRequest r;
    r.set_id(id);
    v1::Job job;
    EXPECT_TRUE(training()->GetJob(Context(server_->admin_token()).get(), r, &job).ok());
    return job;
  }
  v1::Job WaitFor(const std::string& id, const std::function<bool(const v1::Job&)>& done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    v1::Job job = Get(id);
    while (!done(job) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      job = Get(id);
    }
    return job;
  }

  fs::path dir_;
  std::unique_ptr<LensdProcess> server_;
};

}  // namespace lensd::e2e

#endif  // LENSD_TESTS_E2E_TRAINING_FIXTURE_H_
