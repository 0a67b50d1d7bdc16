// The tenant limiter's promises: at most `max` tickets per tenant in flight, tenants independent
// of each other, and a released ticket frees its slot at once, also under concurrent use (this
// test runs under ThreadSanitizer in the test command).
#include "core/tenant_limiter.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace lensd {
namespace {

TEST(TenantLimiterTest, RefusesTheTicketPastTheLimitByNameAndFreesOnRelease) {
  TenantLimiter limiter(2);
  auto a1 = limiter.Acquire("alice");
  auto a2 = limiter.Acquire("alice");
  ASSERT_TRUE(a1.ok() && a2.ok());
  const auto a3 = limiter.Acquire("alice");
  EXPECT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(a3.status().message().find("tenant alice has 2 requests in flight (the limit is 2)"),
            absl::string_view::npos)
      << a3.status();
  EXPECT_TRUE(limiter.Acquire("bob").ok());  // another tenant is not affected
  a1->reset();
  EXPECT_EQ(limiter.in_flight("alice"), 1);
  EXPECT_TRUE(limiter.Acquire("alice").ok());
}

TEST(TenantLimiterTest, ChargedBytesAreBoundedPerTenantAndFreedWithTheTicket) {
  TenantLimiter limiter(8, 100 << 20);
  auto a1 = limiter.Acquire("alice");
  auto a2 = limiter.Acquire("alice");
  ASSERT_TRUE(a1.ok() && a2.ok());
  ASSERT_TRUE((*a1)->Charge(60 << 20).ok());
  const absl::Status refused = (*a2)->Charge(50 << 20);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("60 MiB in flight; this one's 50 MiB more would pass the "
                                   "tenant bound of 100 MiB (--max_tenant_bytes)"),
            absl::string_view::npos)
      << refused;
  EXPECT_EQ(limiter.bytes_in_flight("alice"), 60 << 20);  // the refused charge took nothing
  auto b = limiter.Acquire("bob");
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE((*b)->Charge(90 << 20).ok());  // another tenant has its own bound
  a1->reset();
  EXPECT_EQ(limiter.bytes_in_flight("alice"), 0);
  EXPECT_TRUE((*a2)->Charge(50 << 20).ok());
}

TEST(TenantLimiterTest, ConcurrentClientsAtTheLimitAreNeverRefused) {
  constexpr int kClients = 16;
  TenantLimiter limiter(kClients);
  std::atomic<int> refused{0};
  std::atomic<int> peak{0};
  std::atomic<int> now{0};
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto ticket = limiter.Acquire("team");
        if (!ticket.ok()) {
          ++refused;
          continue;
        }
        const int in = ++now;
        int seen = peak.load();
        while (in > seen && !peak.compare_exchange_weak(seen, in)) {
        }
        --now;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(refused, 0);  // each client holds one ticket at a time: 16 never exceed 16
  EXPECT_LE(peak, kClients);
  EXPECT_EQ(limiter.in_flight("team"), 0);
}

}  // namespace
}  // namespace lensd
