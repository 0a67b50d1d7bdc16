// The server's memory, measured from outside: loading a model grows the resident set by about the
// weights' size, 10,000 requests leave it flat, and an unload gives the weights back.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

namespace v1 = ::lensd::v1;
constexpr double kMiB = 1 << 20;

// `requests` Decode calls on the demo model from `clients` threads; the number that failed.
int DecodeMany(const LensdProcess& server, int clients, int requests) {
  std::atomic<int> failed{0};
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(clients));
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      auto stub = v1::Lens::NewStub(server.channel());
      for (int i = next++; i < requests; i = next++) {
        v1::DecodeRequest r;
        r.set_model("kjv-gpt2");
        r.mutable_input()->set_text(i % 2 == 0 ? "And God said, Let there be light"
                                               : "The LORD is my shepherd; I shall not want.");
        r.set_top_k(3);
        v1::DecodeResponse out;
        if (!stub->Decode(Context(server.read_token()).get(), r, &out).ok()) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  return failed;
}

// As many concurrent clients of one tenant as its limit, each sending its next call as soon as it
// has the last answer: none is refused (the slot is free before the client has its answer).
TEST(ResourcesTest, ATenantAtItsLimitOfConcurrentCallsIsNeverRefused) {
  LensdProcess server({"--models=kjv-gpt2", "--max_requests_per_tenant=64"});
  EXPECT_EQ(DecodeMany(server, 64, 64 * 20), 0);
}

TEST(ResourcesTest, ResidentMemoryFollowsTheWeightsAndStaysFlatUnderLoad) {
  LensdProcess server({"--models=kjv-gpt2", "--max_requests_per_tenant=64"});
  auto models = v1::Models::NewStub(server.channel());
  // Warm up the request path (gRPC's and libtorch's pools) before the baseline.
  ASSERT_EQ(DecodeMany(server, 8, 500), 0);
  const int64_t before_load = server.ResidentBytes();

  v1::LoadModelRequest load;
  load.set_model("slow-gpt2");
  v1::ModelInfo info;
  grpc::Status s = models->LoadModel(Context(server.admin_token()).get(), load, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const int64_t weights = info.memory_bytes();
  const int64_t loaded = server.ResidentBytes();
  const double growth = static_cast<double>(loaded - before_load) / static_cast<double>(weights);
  std::printf("weights %.1f MiB; resident %.1f -> %.1f MiB after the load (x%.2f of the weights)\n",
              weights / kMiB, before_load / kMiB, loaded / kMiB, growth);
  // No second copy stays behind (a file buffer, a conversion copy): within 15% of the weights.
  EXPECT_GT(growth, 0.85);
  EXPECT_LT(growth, 1.15);

  ASSERT_EQ(DecodeMany(server, 8, 1000), 0);
  const int64_t warm = server.ResidentBytes();
  ASSERT_EQ(DecodeMany(server, 8, 10000), 0);
  const int64_t after = server.ResidentBytes();
  std::printf("resident %.1f MiB after 1,000 requests, %.1f MiB after 10,000 more\n", warm / kMiB,
              after / kMiB);
  // Flat: less than 16 MiB (allocator noise) over 10,000 requests; a leak of one response-sized
  // buffer per request would be far more.
  EXPECT_LT(after - warm, 16 << 20);

  v1::UnloadModelRequest unload;
  unload.set_model("slow-gpt2");
  v1::UnloadModelResponse freed;
  s = models->UnloadModel(Context(server.admin_token()).get(), unload, &freed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const int64_t unloaded = server.ResidentBytes();
  std::printf("resident %.1f MiB after the unload\n", unloaded / kMiB);
  EXPECT_LT(unloaded, after - weights * 8 / 10);
}

}  // namespace
}  // namespace lensd::e2e
