// The registry's promises to a shared server: a handle keeps its model usable (never freed under
// a request), an unload refuses queued work at once and waits only for the running batch and the
// handles in flight, the budget is released when the weights are gone, and a load that fails on
// the model's files says FAILED with the reason. Runs under ThreadSanitizer in the test command.
#include "core/model_registry.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "core/testing/fake_served_model.h"
#include "gtest/gtest.h"

namespace lensd {
namespace {
namespace fs = std::filesystem;

constexpr int64_t kWeightBytes = 1000;

// Work that holds the model handle like a request does, and records how it ended.
class HandleWork : public Work {
 public:
  HandleWork(std::shared_ptr<const LoadedModel> model, std::atomic<int>* ran,
             std::atomic<int>* rejected, absl::Notification* gate = nullptr)
      : model_(std::move(model)), ran_(ran), rejected_(rejected), gate_(gate) {
    tenant = "t";
  }
  void Run(absl::Span<Work* const> batch) override {
    if (gate_ != nullptr) gate_->WaitForNotification();
    EXPECT_EQ(model_->model->info().parameter_bytes, kWeightBytes);  // the weights are alive
    ran_->fetch_add(static_cast<int>(batch.size()));
  }
  void Reject(const absl::Status& status) override {
    // Unloaded (UNAVAILABLE), or a flood filled the queue (RESOURCE_EXHAUSTED).
    EXPECT_TRUE(status.code() == absl::StatusCode::kUnavailable ||
                status.code() == absl::StatusCode::kResourceExhausted)
        << status;
    rejected_->fetch_add(1);
  }

 private:
  std::shared_ptr<const LoadedModel> model_;
  std::atomic<int>* ran_;
  std::atomic<int>* rejected_;
  absl::Notification* gate_;
};

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = fs::path(::testing::TempDir()) / ("registry_" + std::to_string(getpid()));
    fs::remove_all(repo_);
    AddModel("m", "{}");
    ModelFactory f;
    f.estimate_bytes = [](const std::string& dir,
                          const ServedModelOptions&) -> absl::StatusOr<int64_t> {
      std::ifstream in(fs::path(dir) / "config.json");
      const std::string text((std::istreambuf_iterator<char>(in)), {});
      if (absl::StrContains(text, "broken")) {
        return absl::InvalidArgumentError(dir + "/config.json: not a JSON object");
      }
      return kWeightBytes;
    };
    f.load =
        [this](const std::string& dir,
               const ServedModelOptions& options) -> absl::StatusOr<std::unique_ptr<ServedModel>> {
      ServedModelInfo info;
      info.parameter_bytes = kWeightBytes;
      info.device = options.device;
      return std::make_unique<testing::FakeServedModel>(info, &live_);
    };
    f.canonical_device = [](const std::string& device) -> absl::StatusOr<std::string> {
      if (device != "cpu") return absl::InvalidArgumentError("device: only cpu here");
      return device;
    };
    f.release_memory = [] {};
    RegistryOptions options;
    options.repository = repo_.string();
    options.budgets = {{"cpu", 10 * kWeightBytes}};
    options.scheduler.workers = 2;
    registry_ = *ModelRegistry::Create(options, f, nullptr);
  }
  void TearDown() override {
    registry_.reset();
    fs::remove_all(repo_);
  }
  void AddModel(const std::string& name, const std::string& config) {
    fs::create_directories(repo_ / name);
    std::ofstream(repo_ / name / "config.json") << config;
  }
  int64_t UsedBytes() const {
    for (const MemoryBudget::Device& d : registry_->Devices()) {
      if (d.name == "cpu") return d.used;
    }
    return -1;
  }
  absl::Status Submit(const std::shared_ptr<const LoadedModel>& model,
                      absl::Notification* gate = nullptr) {
    std::unique_ptr<Work> rejected;
    const absl::Status s = model->scheduler->Submit(
        std::make_unique<HandleWork>(model, &ran_, &rejected_, gate), &rejected);
    if (!s.ok()) rejected->Reject(s);
    return s;
  }

  fs::path repo_;
  std::atomic<int> live_{0};
  std::atomic<int> ran_{0};
  std::atomic<int> rejected_{0};
  std::unique_ptr<ModelRegistry> registry_;
};

TEST_F(RegistryTest, AHandleTakenBeforeAnUnloadStaysUsableAndIsRefusedNewWork) {
  ASSERT_TRUE(registry_->Load("m", {}).ok());
  std::shared_ptr<const LoadedModel> handle = *registry_->Get("m");
  absl::Notification unloaded;
  std::thread unload([&] {
    EXPECT_EQ(*registry_->Unload("m"), kWeightBytes);
    unloaded.Notify();
  });
  // The unload waits for this handle: the weights are still there and still counted.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(unloaded.HasBeenNotified());
  EXPECT_EQ(live_, 1);
  EXPECT_EQ(UsedBytes(), kWeightBytes);
  EXPECT_EQ(registry_->Get("m").status().code(), absl::StatusCode::kFailedPrecondition);
  // Work submitted through the old handle is refused, not run on a freed queue.
  EXPECT_EQ(Submit(handle).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(rejected_, 1);
  EXPECT_EQ(handle->model->info().parameter_bytes, kWeightBytes);
  const absl::Time let_go = absl::Now();
  handle.reset();
  unloaded.WaitForNotification();
  unload.join();
  EXPECT_LT(absl::Now() - let_go, absl::Milliseconds(100));
  EXPECT_EQ(live_, 0);
  EXPECT_EQ(UsedBytes(), 0);
  EXPECT_TRUE(registry_->Load("m", {}).ok());  // and it loads again
}

TEST_F(RegistryTest, AnUnloadRefusesQueuedWorkAtOnceAndWaitsOnlyForTheRunningBatch) {
  ASSERT_TRUE(registry_->Load("m", {}).ok());
  absl::Notification gate1, gate2;
  {
    const std::shared_ptr<const LoadedModel> handle = *registry_->Get("m");
    ASSERT_TRUE(Submit(handle, &gate1).ok());
    ASSERT_TRUE(Submit(handle, &gate2).ok());
    absl::SleepFor(absl::Milliseconds(50));  // both workers are inside their gates
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(Submit(handle).ok());
  }
  absl::Notification unloaded;
  std::thread unload([&] {
    EXPECT_TRUE(registry_->Unload("m").ok());
    unloaded.Notify();
  });
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(rejected_, 20);  // refused with UNAVAILABLE while the running batches go on
  EXPECT_FALSE(unloaded.HasBeenNotified());
  gate1.Notify();
  gate2.Notify();
  unloaded.WaitForNotification();
  unload.join();
  EXPECT_EQ(ran_, 2);
  EXPECT_EQ(live_, 0);
}

TEST_F(RegistryTest, ALoadThatFailsOnTheModelsFilesIsFailedWithTheReason) {
  AddModel("broken", "broken");
  const absl::StatusOr<ModelStatus> load = registry_->Load("broken", {});
  ASSERT_EQ(load.status().code(), absl::StatusCode::kInvalidArgument);
  const ModelStatus status = *registry_->Status("broken");
  EXPECT_EQ(status.state, ModelState::kFailed);
  EXPECT_TRUE(absl::StrContains(status.reason, "config.json: not a JSON object")) << status.reason;
  EXPECT_TRUE(absl::StrContains(registry_->Get("broken").status().message(), "last load failed"));
  // A bad request field is the caller's error: the model stays as it was.
  const absl::Status dtype = registry_->Load("m", {"float64", "cpu"}).status();
  EXPECT_EQ(dtype.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(dtype.message(), "dtype: \"float64\"")) << dtype;
  EXPECT_EQ(registry_->Load("m", {"float32", "cuda:7"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->Status("m")->state, ModelState::kAvailable);
  EXPECT_EQ(UsedBytes(), 0);
}

// Links in the repository are followed (it is the admin's) and each one pointing outside it is
// logged as its model loads.
TEST_F(RegistryTest, LinksOutsideTheRepositoryAreLoggedAsTheModelLoads) {
  const fs::path outside = repo_.parent_path() / (repo_.filename().string() + "-outside");
  fs::create_directories(outside);
  std::ofstream(outside / "config.json") << "{}";
  fs::create_directories(repo_ / "linked");
  fs::create_symlink(outside / "config.json", repo_ / "linked" / "config.json");
  ::testing::internal::CaptureStderr();
  const absl::StatusOr<ModelStatus> load = registry_->Load("linked", {});
  const std::string log = ::testing::internal::GetCapturedStderr();
  fs::remove_all(outside);
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_TRUE(absl::StrContains(log, "linked/config.json links to ")) << log;
  EXPECT_TRUE(absl::StrContains(log, "outside the model repository")) << log;
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(registry_->Load("m", {}).ok());  // no links: nothing logged
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// Requests keep coming while the model is unloaded and loaded again: every piece of work either
// runs on live weights or is refused, exactly once, and nothing is freed under it (TSan/ASan).
TEST_F(RegistryTest, ChurnUnderLoadLosesNoWorkAndFreesEveryModel) {
  ASSERT_TRUE(registry_->Load("m", {}).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> submitted{0};
  std::atomic<int> refused{0};  // Get refused: the model was between unload and load
  std::vector<std::thread> clients;
  clients.reserve(4);
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      while (!stop) {
        absl::StatusOr<std::shared_ptr<const LoadedModel>> handle = registry_->Get("m");
        if (!handle.ok()) {
          ++refused;
          std::this_thread::yield();
          continue;
        }
        ++submitted;
        (void)Submit(*handle);
      }
    });
  }
  for (int cycle = 0; cycle < 30; ++cycle) {
    absl::SleepFor(absl::Milliseconds(2));
    ASSERT_TRUE(registry_->Unload("m").ok());
    ASSERT_TRUE(registry_->Load("m", {}).ok());
  }
  stop = true;
  for (std::thread& t : clients) t.join();
  ASSERT_TRUE(registry_->Unload("m").ok());
  EXPECT_GT(submitted, 0);
  EXPECT_EQ(ran_ + rejected_, submitted);
  EXPECT_EQ(live_, 0);
  EXPECT_EQ(UsedBytes(), 0);
}

}  // namespace
}  // namespace lensd
