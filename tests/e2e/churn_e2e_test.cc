// The serving core under a shared box's churn: health per service follows the loaded models, and
// a model unloaded and loaded again in a loop while clients keep sending it long Decode and
// GetActivations calls gives every client either its right answer or a clear refusal, never a
// crash (the test command runs lensd under AddressSanitizer and UBSan), with quick unloads.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

namespace v1 = ::lensd::v1;
using ::testing::HasSubstr;

constexpr const char* kModel = "kjv-gpt2";

grpc::Status Admin(const LensdProcess& server, bool load) {
  auto models = v1::Models::NewStub(server.channel());
  if (load) {
    v1::LoadModelRequest r;
    r.set_model(kModel);
    v1::ModelInfo info;
    return models->LoadModel(Context(server.admin_token()).get(), r, &info);
  }
  v1::UnloadModelRequest r;
  r.set_model(kModel);
  v1::UnloadModelResponse freed;
  return models->UnloadModel(Context(server.admin_token()).get(), r, &freed);
}

TEST(ChurnTest, HealthPerServiceFollowsTheLoadedModels) {
  LensdProcess server({std::string("--models=") + kModel});
  for (const char* service :
       {"", "lensd.v1.Models", "lensd.v1.Lens", "lensd.v1.Attribution", "lensd.v1.Training"}) {
    EXPECT_EQ(server.Health(service), "SERVING") << service;
  }
  EXPECT_THAT(server.Health("lensd.v1.Nothing"), HasSubstr("unknown"));
  ASSERT_TRUE(Admin(server, false).ok());
  EXPECT_EQ(server.Health("lensd.v1.Lens"), "NOT_SERVING");  // no model to decode with
  EXPECT_EQ(server.Health("lensd.v1.Attribution"), "NOT_SERVING");
  EXPECT_EQ(server.Health("lensd.v1.Models"), "SERVING");  // an admin can still load one
  EXPECT_EQ(server.Health(""), "SERVING");
  ASSERT_TRUE(Admin(server, true).ok());
  EXPECT_EQ(server.Health("lensd.v1.Lens"), "SERVING");
}

v1::DecodeRequest LongDecode() {
  v1::DecodeRequest r;
  r.set_model(kModel);
  std::string text;
  for (int i = 0; i < 12; ++i) text += "And God said, Let there be light: and there was light. ";
  r.mutable_input()->set_text(text);
  r.set_top_k(1);
  return r;
}

bool SameDecode(const v1::DecodeResponse& a, const v1::DecodeResponse& b) {
  if (a.rows_size() != b.rows_size()) return false;
  for (int r = 0; r < a.rows_size(); ++r) {
    if (a.rows(r).cells_size() != b.rows(r).cells_size()) return false;
    for (int x = 0; x < a.rows(r).cells_size(); ++x) {
      const auto& p = a.rows(r).cells(x).top(0);
      const auto& q = b.rows(r).cells(x).top(0);
      if (p.id() != q.id() || std::abs(p.prob() - q.prob()) > 1e-4) return false;
    }
  }
  return true;
}

// A refusal a client may see while the model is between an unload and the next load.
bool Refusal(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
}

TEST(ChurnTest, UnloadAndLoadUnderLoadGiveRightAnswersOrRefusalsAndQuickUnloads) {
  LensdProcess server({std::string("--models=") + kModel, "--max_requests_per_tenant=64"});
  auto lens = v1::Lens::NewStub(server.channel());
  v1::DecodeResponse want;
  ASSERT_TRUE(lens->Decode(Context(server.read_token()).get(), LongDecode(), &want).ok());

  std::atomic<bool> stop{false};
  std::atomic<int> answered{0}, refused{0}, wrong{0};
  std::vector<std::thread> clients;
  clients.reserve(8);
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      auto stub = v1::Lens::NewStub(server.channel());
      while (!stop) {
        grpc::Status s;
        bool right = true;
        if (c % 2 == 0) {
          v1::DecodeResponse out;
          s = stub->Decode(Context(server.read_token()).get(), LongDecode(), &out);
          right = !s.ok() || SameDecode(out, want);
        } else {
          v1::GetActivationsRequest a;
          a.set_model(kModel);
          a.mutable_input()->set_text(LongDecode().input().text());
          a.add_hook_points("blocks.3.hook_resid_post");
          const auto context = Context(server.read_token());
          auto reader = stub->GetActivations(context.get(), a);
          v1::TensorChunk chunk;
          int64_t bytes = 0;
          while (reader->Read(&chunk)) bytes += static_cast<int64_t>(chunk.data().size());
          s = reader->Finish();
          right = !s.ok() || bytes > 0;
        }
        if (s.ok()) {
          ++answered;
        } else if (Refusal(s)) {
          ++refused;
        }
        if (!right || (!s.ok() && !Refusal(s))) {
          ++wrong;
          std::fprintf(stderr, "client %d: %d %s\n", c, s.error_code(), s.error_message().c_str());
        }
      }
    });
  }
  std::vector<double> unload_ms;
  for (int cycle = 0; cycle < 100; ++cycle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto start = std::chrono::steady_clock::now();
    const grpc::Status s = Admin(server, false);
    ASSERT_TRUE(s.ok()) << "cycle " << cycle << ": " << s.error_message();
    unload_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
    ASSERT_TRUE(Admin(server, true).ok()) << "cycle " << cycle;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (std::thread& t : clients) t.join();
  std::sort(unload_ms.begin(), unload_ms.end());
  double mean = 0;
  for (const double ms : unload_ms) mean += ms / static_cast<double>(unload_ms.size());
  std::printf("100 unload/load cycles: %d answers, %d refusals; unload %.1f ms mean, %.1f max\n",
              answered.load(), refused.load(), mean, unload_ms.back());
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(answered, 0);
  // An unload waits for the running batch only: one long Decode, not the queue behind it.
  EXPECT_LT(unload_ms.back(), 1500.0);
  const int exit_status = server.Stop();
  const std::string log = server.Log();
  EXPECT_EQ(exit_status, 0) << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
}

// p99 of `n` sequential Decode calls, in ms; -1 if one failed.
double DecodeP99(const LensdProcess& server, int n) {
  auto lens = v1::Lens::NewStub(server.channel());
  v1::DecodeRequest r;
  r.set_model(kModel);
  r.mutable_input()->set_text("In the beginning God created the heaven and the earth.");
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    v1::DecodeResponse out;
    const auto start = std::chrono::steady_clock::now();
    if (!lens->Decode(Context(server.read_token(), 5).get(), r, &out).ok()) return -1;
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[static_cast<size_t>(0.99 * static_cast<double>(ms.size() - 1))];
}

// A client that opens a large stream and reads nothing: the model's worker goes on with other
// tenants' work (it never waits for a reader), and the idle stream fails once it holds more than
// its buffer, naming the bound.
TEST(ChurnTest, AnIdleReaderNeitherStallsOtherTenantsNorGrowsWithoutBound) {
  LensdProcess server({std::string("--models=") + kModel, "--max_stream_buffer_bytes=2097152"});
  const double alone = DecodeP99(server, 50);
  ASSERT_GT(alone, 0);

  v1::GetActivationsRequest a;
  a.set_model(kModel);
  std::string text;
  for (int i = 0; i < 16; ++i) text += "And God said, Let there be light: and there was light. ";
  a.mutable_input()->set_text(text);
  for (int layer = 0; layer < 6; ++layer) {
    const std::string block = "blocks." + std::to_string(layer);
    for (const char* point : {".hook_resid_pre", ".hook_resid_mid", ".hook_resid_post",
                              ".attn.hook_pattern", ".attn.hook_attn_scores", ".mlp.hook_post"}) {
      a.add_hook_points(block + point);
    }
  }
  auto idle_stub = v1::Lens::NewStub(server.channel());
  const auto idle_context = Context(server.admin_token(), 60);  // another tenant
  auto idle = idle_stub->GetActivations(idle_context.get(), a);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // it has queued all it may
  const double beside_idle = DecodeP99(server, 50);
  std::printf(
      "Decode p99 %.1f ms alone, %.1f ms beside an idle reader of a 36-point GetActivations\n",
      alone, beside_idle);
  ASSERT_GT(beside_idle, 0) << "a Decode failed beside the idle reader";
  EXPECT_LT(beside_idle, 2 * alone + 20);

  v1::TensorChunk chunk;
  while (idle->Read(&chunk)) {
  }
  const grpc::Status s = idle->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("--max_stream_buffer_bytes"));
}

}  // namespace
}  // namespace lensd::e2e
