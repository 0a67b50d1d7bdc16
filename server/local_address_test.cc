// The no-auth guard: only a literal loopback address, localhost or a unix socket may serve
// without --tokens_file; host names that merely look like loopback do not.
#include "gtest/gtest.h"
#include "server/server.h"

namespace lensd::server {
namespace {

TEST(LocalAddressTest, LoopbackAddressesAndUnixSocketsAreLocal) {
  EXPECT_TRUE(IsLocalAddress("127.0.0.1:50051"));
  EXPECT_TRUE(IsLocalAddress("127.3.4.5:0"));
  EXPECT_TRUE(IsLocalAddress("ipv4:127.0.0.1:50051"));
  EXPECT_TRUE(IsLocalAddress("localhost:50051"));
  EXPECT_TRUE(IsLocalAddress("[::1]:50051"));
  EXPECT_TRUE(IsLocalAddress("ipv6:[::1]:50051"));
  EXPECT_TRUE(IsLocalAddress("unix:/run/lensd.sock"));
}

TEST(LocalAddressTest, HostNamesAndOtherAddressesAreNot) {
  EXPECT_FALSE(IsLocalAddress("127.example:50051"));
  EXPECT_FALSE(IsLocalAddress("127.0.0.1.nip.io:50051"));
  EXPECT_FALSE(IsLocalAddress("0.0.0.0:50051"));
  EXPECT_FALSE(IsLocalAddress("[::]:50051"));
  EXPECT_FALSE(IsLocalAddress("10.1.2.3:50051"));
  EXPECT_FALSE(IsLocalAddress("lensd.internal:50051"));
}

}  // namespace
}  // namespace lensd::server
