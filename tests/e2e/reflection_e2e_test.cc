// grpcurl, a generic gRPC client given no lensd proto files, against the real server: reflection
// lists and describes the services without a token, and a Decode written as JSON works with one
// (and is refused without). grpc.health.v1 is listed; its schema is not served by reflection
// (gRPC's built-in health service has no descriptor), so grpcurl needs health.proto to call it.
#include <cstdio>
#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;

// `grpcurl -plaintext <flags> 127.0.0.1:<port> <what>`: its output (stdout and stderr) and its
// exit status.
std::pair<std::string, int> Grpcurl(const LensdProcess& server, const std::string& flags,
                                    const std::string& what) {
  const std::string command = std::string(LENSD_GRPCURL) + " -plaintext " + flags +
                              " 127.0.0.1:" + std::to_string(server.port()) + " " + what;
  return RunCommand(command);
}

TEST(ReflectionTest, GrpcurlListsDescribesAndCallsWithoutProtoFiles) {
  LensdProcess server({"--models=kjv-gpt2"});

  const auto listed = Grpcurl(server, "", "list");
  ASSERT_EQ(listed.second, 0) << listed.first;
  for (const char* service : {"lensd.v1.Lens", "lensd.v1.Models", "grpc.health.v1.Health",
                              "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_THAT(listed.first, HasSubstr(service));
  }

  const auto described = Grpcurl(server, "", "describe lensd.v1.Lens");
  ASSERT_EQ(described.second, 0) << described.first;
  EXPECT_THAT(described.first, HasSubstr("rpc Decode ( .lensd.v1.DecodeRequest )"));
  EXPECT_THAT(described.first, HasSubstr("returns ( stream .lensd.v1.GenerateResponse )"));

  const std::string decode =
      "-d '{\"model\": \"kjv-gpt2\", \"input\": {\"text\": \"And God said\"}, \"layers\": [3]}'";
  const auto refused = Grpcurl(server, decode, "lensd.v1.Lens/Decode");
  EXPECT_NE(refused.second, 0);
  EXPECT_THAT(refused.first, HasSubstr("Unauthenticated"));

  const auto decoded =
      Grpcurl(server, decode + " -H 'authorization: Bearer " + server.read_token() + "'",
              "lensd.v1.Lens/Decode");
  ASSERT_EQ(decoded.second, 0) << decoded.first;
  EXPECT_THAT(decoded.first, HasSubstr("\"layer\": \"3\""));
  EXPECT_THAT(decoded.first, HasSubstr("\"cells\""));
}

}  // namespace
}  // namespace lensd::e2e
