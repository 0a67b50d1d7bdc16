// Hostile input from a read-role tenant: each request that once took the server down or made it
// spend without bound is refused before any work starts, with the field or bound named, and the
// server's memory does not move.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lensd/v1/attribution.grpc.pb.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

namespace v1 = ::lensd::v1;
using ::testing::HasSubstr;
using ::testing::Not;

class HostileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new LensdProcess({"--models=kjv-gpt2", "--saes=kjv-gpt2/res3-topk"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  // A Decode of the demo model (vocabulary 4096, 6 layers, 256 positions) as the reader.
  static grpc::Status Decode(const v1::DecodeRequest& request, v1::DecodeResponse* out) {
    return v1::Lens::NewStub(server_->channel())
        ->Decode(Context(server_->read_token()).get(), request, out);
  }

  // A GetActivations stream that should be refused: its status (no chunk may arrive).
  static grpc::Status RefusedActivations(const v1::GetActivationsRequest& request) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + server_->read_token());
    auto reader = v1::Lens::NewStub(server_->channel())->GetActivations(&context, request);
    v1::TensorChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    return reader->Finish();
  }

  static v1::DecodeRequest LongPrompt(int tokens) {
    v1::DecodeRequest r;
    r.set_model("kjv-gpt2");
    for (int i = 0; i < tokens; ++i) r.mutable_input()->mutable_tokens()->add_ids(100 + i % 50);
    return r;
  }

  static LensdProcess* server_;
};

LensdProcess* HostileTest::server_ = nullptr;

// The 2 KB request that once built a 4.6 GB answer: position 0 two thousand times, top_k = the
// vocabulary. Refused at once, nothing allocated.
TEST_F(HostileTest, RepeatedPositionsAreRefusedInUnder100msWithMemoryUnchanged) {
  v1::DecodeRequest r;
  r.set_model("kjv-gpt2");
  r.mutable_input()->set_text("And God said, Let there be light: and there was light.");
  r.set_top_k(4096);
  for (int i = 0; i < 2000; ++i) r.add_positions(0);
  v1::DecodeResponse out;
  ASSERT_TRUE(Decode(LongPrompt(8), &out).ok());  // warm
  const int64_t before = server_->ResidentBytes();
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status s = Decode(r, &out);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const int64_t after = server_->ResidentBytes();
  std::printf("%zu-byte request refused in %.1f ms; resident %+.1f MiB\n", r.ByteSizeLong(), ms,
              static_cast<double>(after - before) / (1 << 20));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "positions: 0 is listed more than once; list each once");
  EXPECT_LT(ms, 100);
  EXPECT_LT(after - before, 8 << 20);
}

// Distinct positions, the largest top_k: the answer would pass the 64 MiB message bound, so it is
// refused before the forward pass (it once ran 8.9 s and held 1.26 GB before failing to send).
TEST_F(HostileTest, AnAnswerOverTheMessageBoundIsRefusedNamingTheEstimate) {
  v1::DecodeRequest r = LongPrompt(256);
  r.set_top_k(4096);
  v1::DecodeResponse out;
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status s = Decode(r, &out);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("7 rows x 256 positions x top_k 4096"));
  EXPECT_THAT(s.error_message(), HasSubstr("(--max_message_bytes)"));
  EXPECT_LT(ms, 100);
  r.set_top_k(64);  // a 64th of it fits (and in the client's default 4 MiB)
  const grpc::Status fits = Decode(r, &out);
  ASSERT_TRUE(fits.ok()) << fits.error_message();
  ASSERT_EQ(out.rows_size(), 7);
  EXPECT_EQ(out.rows(0).cells(0).top_size(), 64);
}

TEST_F(HostileTest, RepeatedLayersHookPointsAndSaesAreRefusedByField) {
  v1::DecodeRequest decode = LongPrompt(4);
  decode.add_layers(2);
  decode.add_layers(2);
  v1::DecodeResponse decoded;
  grpc::Status s = Decode(decode, &decoded);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "layers: 2 is listed more than once; list each once");

  v1::GetActivationsRequest acts;
  acts.set_model("kjv-gpt2");
  acts.mutable_input()->set_text("In the beginning");
  acts.add_hook_points("blocks.0.hook_resid_pre");
  acts.add_hook_points("blocks.0.hook_resid_pre");
  s = RefusedActivations(acts);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "hook_points: \"blocks.0.hook_resid_pre\" is listed more than once; list each once");

  v1::EncodeSaeRequest encode;
  encode.set_model("kjv-gpt2");
  encode.mutable_input()->set_text("In the beginning");
  for (int i = 0; i < 1000; ++i) encode.add_saes("res3-topk");
  v1::EncodeSaeResponse encoded;
  s = v1::Attribution::NewStub(server_->channel())
          ->EncodeSae(Context(server_->read_token()).get(), encode, &encoded);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "saes: \"res3-topk\" is listed more than once; list each once");
}

// A megabyte-long model name is neither echoed whole to the client nor written whole to the log.
TEST_F(HostileTest, HugeNamesAreCutInErrorsAndTheLog) {
  v1::DecodeRequest r = LongPrompt(4);
  r.set_model(std::string(1000000, 'm'));
  v1::DecodeResponse out;
  const grpc::Status s = Decode(r, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("... (1000000 bytes)"));
  EXPECT_LE(s.error_message().size(), 1024 + 32);
  const std::string log = server_->Log();
  EXPECT_THAT(log, HasSubstr("(1000000 bytes)"));
  EXPECT_THAT(log, Not(HasSubstr(std::string(2000, 'm'))));
}

TEST_F(HostileTest, ANameWithANulByteIsRefusedNotReadAsItsPrefix) {
  v1::LoadLensRequest r;
  r.set_model("kjv-gpt2");
  r.set_lens(std::string("tuned\0/../../etc", 16));
  v1::LensInfo info;
  const grpc::Status s = v1::Models::NewStub(server_->channel())
                             ->LoadLens(Context(server_->admin_token()).get(), r, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("is not a folder name"));
  EXPECT_THAT(s.error_message(), HasSubstr("tuned\\x00"));
}

// The token is checked first: a caller without one learns nothing, not even the server's version.
TEST_F(HostileTest, AnUnauthenticatedOldClientLearnsNotTheVersion) {
  grpc::ClientContext context;
  context.AddMetadata("x-lensd-client-version", "0.0.1");
  v1::ServerInfo info;
  const grpc::Status s = v1::Models::NewStub(server_->channel())
                             ->GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), Not(HasSubstr("lensd ")));
}

TEST_F(HostileTest, GetServerInfoReportsTheCostBounds) {
  v1::ServerInfo info;
  const grpc::Status s =
      v1::Models::NewStub(server_->channel())
          ->GetServerInfo(Context(server_->read_token()).get(), v1::GetServerInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.limits().max_request_bytes(), int64_t{4} << 30);
  EXPECT_EQ(info.limits().max_tenant_bytes(), int64_t{8} << 30);
  EXPECT_EQ(info.limits().max_stream_buffer_bytes(), 256 << 20);
  EXPECT_EQ(info.limits().max_hook_points(), 64);
}

// Malformed requests get INVALID_ARGUMENT naming the message and the field, are logged, and the
// server goes on serving (gRPC's typed handlers answered a bare UNIMPLEMENTED).
TEST_F(HostileTest, InvalidUtf8InAStringFieldIsRefusedNamingTheField) {
  v1::TokenizeRequest tokenize;
  tokenize.set_model("kjv-gpt2");
  tokenize.set_text("In the \xff\xfe beginning");
  grpc::Status s = server_->RawCall("/lensd.v1.Models/Tokenize", tokenize.SerializeAsString(),
                                    server_->read_token());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "request is not a valid lensd.v1.TokenizeRequest: text is not UTF-8 (byte 7 of the "
            "field); send text as UTF-8");

  v1::DecodeRequest decode;
  decode.set_model("kjv-gpt2");
  decode.mutable_input()->set_text("caf\xc3");  // a cut two-byte sequence
  s = server_->RawCall("/lensd.v1.Lens/Decode", decode.SerializeAsString(), server_->read_token());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("DecodeRequest: input.text is not UTF-8 (byte 3"));

  v1::GetModelRequest get;
  get.set_model("\xc0\xaf");  // an overlong '/'
  s = server_->RawCall("/lensd.v1.Models/GetModel", get.SerializeAsString(), server_->read_token());
  EXPECT_THAT(s.error_message(), HasSubstr("GetModelRequest: model is not UTF-8 (byte 0"));

  // A stream: the hook name is not UTF-8 (the typed client sends it as it is).
  v1::GetActivationsRequest acts;
  acts.set_model("kjv-gpt2");
  acts.mutable_input()->set_text("In the beginning");
  acts.add_hook_points("blocks.0.hook_resid_pre");
  acts.add_hook_points("blocks.1.\xed\xa0\x80");  // a UTF-16 surrogate
  s = RefusedActivations(acts);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("hook_points[1] is not UTF-8 (byte 9"));
  EXPECT_THAT(server_->Log(), HasSubstr("\"code\":\"INVALID_ARGUMENT\""));
}

TEST_F(HostileTest, TruncatedAndGarbledMessagesAreRefusedAndTheServerGoesOn) {
  v1::DecodeRequest decode = LongPrompt(16);
  const std::string whole = decode.SerializeAsString();
  grpc::Status s = server_->RawCall("/lensd.v1.Lens/Decode", whole.substr(0, whole.size() - 3),
                                    server_->read_token());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("request is not a valid lensd.v1.DecodeRequest: input"));
  EXPECT_THAT(s.error_message(), HasSubstr("ends inside this field"));
  s = server_->RawCall("/lensd.v1.Lens/Decode", std::string("\x0a\xff\xff\xff\xff\x0f", 6),
                       server_->read_token());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = server_->RawCall("/lensd.v1.Lens/Decode", std::string("\x00\x00", 2), server_->read_token());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("field tag at byte 0 is malformed"));
  std::string reply;
  s = server_->RawCall("/lensd.v1.Lens/Decode", whole, server_->read_token(), &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::DecodeResponse decoded;
  ASSERT_TRUE(decoded.ParseFromString(reply));
  EXPECT_EQ(decoded.rows_size(), 7);
}

// Monitoring cannot be blocked: clients that send their request a byte at a time (or never finish
// it) hold only their own connections while scrapes go on.
TEST_F(HostileTest, SlowMetricsClientsDoNotBlockScrapes) {
  std::vector<int> slow;
  for (int i = 0; i < 8; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->metrics_port()));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(send(fd, "GET /met", 8, 0), 8);
    slow.push_back(fd);
  }
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::string body = server_->Scrape();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    EXPECT_THAT(body, HasSubstr("200 OK"));
    EXPECT_THAT(body, HasSubstr("lensd_requests_total"));
    EXPECT_LT(ms, 500) << "scrape " << i;
    for (const int fd : slow) (void)send(fd, "r", 1, MSG_NOSIGNAL);  // a byte each, now and then
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  for (const int fd : slow) close(fd);
}

}  // namespace
}  // namespace lensd::e2e
