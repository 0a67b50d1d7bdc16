// The Lens service in process, on a fake decoding model (server/testing/): what a client gets back
// is what the model computed for its own request, in every cell, alone or batched with others; a
// tenant at its in-flight limit is never refused by its own finished calls; admission refuses what
// is over a bound before any work; bad fields are named; an unload under held work lets go of the
// model and answers every call.
#include <grpcpp/grpcpp.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "server/testing/fake_decoding.h"
#include "server/testing/in_process_server.h"

namespace lensd::server {
namespace {
using testing::FakeDecoding;
using testing::InProcessServer;

class LensServiceTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = InProcessServer::DefaultOptions()) {
    decoding_ = std::make_shared<FakeDecoding>(testing::SmallModelInfo());
    absl::StatusOr<std::unique_ptr<InProcessServer>> s =
        InProcessServer::StartFake({.decoding = decoding_}, std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    lens_ = v1::Lens::NewStub(server_->channel());
  }

  static v1::DecodeRequest Request(const std::vector<int64_t>& tokens) {
    v1::DecodeRequest r;
    r.set_model("fake");
    for (const int64_t t : tokens) r.mutable_input()->mutable_tokens()->add_ids(t);
    return r;
  }

  grpc::Status Call(const v1::DecodeRequest& request, v1::DecodeResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return lens_->Decode(&context, request, response);
  }

  // The response's cells against FakeDecoding::Expected for the same request alone.
  void ExpectCellsOf(const v1::DecodeRequest& request, const v1::DecodeResponse& response) {
    DecodeSpec spec;
    spec.tokens.assign(request.input().tokens().ids().begin(),
                       request.input().tokens().ids().end());
    spec.layers.assign(request.layers().begin(), request.layers().end());
    spec.positions.assign(request.positions().begin(), request.positions().end());
    spec.top_k = request.has_top_k() ? request.top_k() : 5;
    const DecodeOutput want = FakeDecoding::Expected(spec, testing::SmallModelInfo());
    ASSERT_EQ(response.rows_size(), static_cast<int>(want.rows.size()));
    const size_t columns = want.positions.size();
    for (size_t r = 0; r < want.rows.size(); ++r) {
      const v1::DecodeRow& row = response.rows(static_cast<int>(r));
      EXPECT_EQ(row.layer(), want.rows[r]);
      EXPECT_EQ(row.is_output(), want.rows[r] == 4);
      ASSERT_EQ(row.cells_size(), static_cast<int>(columns));
      for (size_t p = 0; p < columns; ++p) {
        const v1::DecodeCell& cell = row.cells(static_cast<int>(p));
        const size_t index = r * columns + p;
        EXPECT_EQ(cell.position(), want.positions[p]);
        EXPECT_EQ(cell.target(), want.targets[p]);
        EXPECT_FLOAT_EQ(cell.entropy(), want.entropy[index]);
        ASSERT_EQ(cell.top_size(), want.top_k);
        for (int j = 0; j < want.top_k; ++j) {
          EXPECT_EQ(cell.top(j).id(), want.top_ids[index * want.top_k + j]);
          EXPECT_FLOAT_EQ(cell.top(j).prob(), want.top_probs[index * want.top_k + j]);
        }
      }
    }
  }

  std::shared_ptr<FakeDecoding> decoding_;
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<v1::Lens::Stub> lens_;
};

TEST_F(LensServiceTest, DecodeAnswersEveryCellAsTheModelComputedIt) {
  StartServer();
  v1::DecodeRequest request = Request({5, 6, 7, 8});
  request.add_layers(3);
  request.add_layers(1);
  request.add_positions(2);
  request.add_positions(0);
  request.set_top_k(3);
  v1::DecodeResponse response;
  const grpc::Status s = Call(request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.model(), "fake");
  EXPECT_EQ(response.lens(), "logit");
  EXPECT_EQ(response.input_tokens_size(), 4);
  ExpectCellsOf(request, response);
}

template <typename T>
std::vector<T> Unpacked(const v1::Tensor& tensor) {
  std::vector<T> values(tensor.data().size() / sizeof(T));
  std::memcpy(values.data(), tensor.data().data(), tensor.data().size());
  return values;
}

TEST_F(LensServiceTest, APackedAnswerHoldsTheCellsNumbersAsArrays) {
  StartServer();
  v1::DecodeRequest request = Request({5, 6, 7, 8, 9});
  request.add_layers(2);
  request.add_layers(0);
  request.set_top_k(4);
  v1::DecodeResponse cells;
  ASSERT_TRUE(Call(request, &cells).ok());
  request.set_packed(true);
  v1::DecodeResponse packed;
  const grpc::Status s = Call(request, &packed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(packed.rows_size(), 0);
  const v1::DecodeGrid& grid = packed.grid();
  const int rows = cells.rows_size();
  const int columns = cells.rows(0).cells_size();
  ASSERT_EQ(grid.layers_size(), rows);
  ASSERT_EQ(grid.positions_size(), columns);
  EXPECT_EQ(std::vector<int64_t>(grid.top_ids().shape().begin(), grid.top_ids().shape().end()),
            (std::vector<int64_t>{rows, columns, 4}));
  EXPECT_EQ(grid.top_ids().dtype(), "int64");
  EXPECT_EQ(grid.top_probs().dtype(), "float32");
  const std::vector<int64_t> ids = Unpacked<int64_t>(grid.top_ids());
  const std::vector<float> probs = Unpacked<float>(grid.top_probs());
  const std::vector<float> entropy = Unpacked<float>(grid.statistics().at("entropy"));
  const std::vector<float> max_probability =
      Unpacked<float>(grid.statistics().at("max_probability"));
  ASSERT_EQ(ids.size(), static_cast<size_t>(rows * columns * 4));
  ASSERT_EQ(entropy.size(), static_cast<size_t>(rows * columns));
  EXPECT_EQ(grid.statistics().count("forward_kl"), 0U);  // not computed, so not sent
  for (int r = 0; r < rows; ++r) {
    EXPECT_EQ(grid.layers(r), cells.rows(r).layer());
    for (int p = 0; p < columns; ++p) {
      const v1::DecodeCell& cell = cells.rows(r).cells(p);
      const size_t index = static_cast<size_t>(r) * columns + p;
      EXPECT_EQ(grid.positions(p), cell.position());
      EXPECT_EQ(grid.targets(p), cell.target());
      EXPECT_EQ(entropy[index], cell.entropy());
      EXPECT_EQ(max_probability[index], cell.max_probability());
      for (int j = 0; j < 4; ++j) {
        EXPECT_EQ(ids[index * 4 + j], cell.top(j).id());
        EXPECT_EQ(probs[index * 4 + j], cell.top(j).prob());
        EXPECT_EQ(grid.token_texts().count(cell.top(j).id()), 1U);
      }
    }
  }
}

TEST_F(LensServiceTest, ConcurrentCallsShareABatchAndEachGetsItsOwnAnswer) {
  StartServer();
  decoding_->Hold();  // the first call's pass waits, the others queue behind it
  constexpr int kCalls = 8;
  std::vector<v1::DecodeRequest> requests;
  requests.reserve(kCalls);
  for (int64_t i = 0; i < kCalls; ++i) requests.push_back(Request({i, i + 1, 2 * i, 7}));
  std::vector<v1::DecodeResponse> responses(kCalls);
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> callers;
  callers.reserve(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] { statuses[i] = Call(requests[i], &responses[i]); });
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (decoding_->waiting() == 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  absl::SleepFor(absl::Milliseconds(200));  // the rest reach the queue
  decoding_->Release();
  for (std::thread& t : callers) t.join();
  int batched = 0;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    ExpectCellsOf(requests[i], responses[i]);
    if (responses[i].batch_size() > 1) ++batched;
  }
  EXPECT_GT(decoding_->largest_batch(), 1);
  EXPECT_GT(batched, 1);
  EXPECT_EQ(decoding_->requests(), kCalls);
}

TEST_F(LensServiceTest, ATenantAtItsInFlightLimitIsNeverRefusedByItsFinishedCalls) {
  ServerOptions options = InProcessServer::DefaultOptions();
  options.limits.max_requests_per_tenant = 16;
  options.limits.max_queue_per_model = 64;
  StartServer(options);
  constexpr int kClients = 16;  // exactly the limit, each calling back to back
  constexpr int kCallsEach = 40;
  std::atomic<int> refused{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kCallsEach; ++i) {
        v1::DecodeResponse response;
        const grpc::Status s = Call(Request({c, i % 50, 3}), &response);
        if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
        if (!s.ok()) ++failed;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(decoding_->requests(), kClients * kCallsEach);
}

TEST_F(LensServiceTest, AnAnswerOverTheRequestBoundIsRefusedBeforeAnyWork) {
  ServerOptions options = InProcessServer::DefaultOptions();
  options.limits.max_request_bytes = 4096;
  StartServer(options);
  std::vector<int64_t> tokens(60, 1);
  v1::DecodeRequest request = Request(tokens);
  request.set_top_k(50);
  v1::DecodeResponse response;
  const grpc::Status s = Call(request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "--max_request_bytes")) << s.error_message();
  EXPECT_EQ(decoding_->batches(), 0);
}

TEST_F(LensServiceTest, BadFieldsAreNamedAndNothingRuns) {
  StartServer();
  struct Case {
    v1::DecodeRequest request;
    grpc::StatusCode code;
    const char* field;
  };
  std::vector<Case> cases;
  cases.push_back({Request({1, 2, 3}), grpc::StatusCode::INVALID_ARGUMENT, "positions"});
  cases.back().request.add_positions(1);
  cases.back().request.add_positions(1);
  cases.push_back({Request({1, 2, 3}), grpc::StatusCode::INVALID_ARGUMENT, "layers"});
  cases.back().request.add_layers(9);
  cases.push_back({Request({}), grpc::StatusCode::INVALID_ARGUMENT, "input.tokens"});
  cases.back().request.mutable_input()->mutable_tokens();
  cases.push_back({Request({1, 2, 3}), grpc::StatusCode::NOT_FOUND, "lens"});
  cases.back().request.set_lens("tuned");
  cases.push_back({Request({1, 2, 3}), grpc::StatusCode::NOT_FOUND, "nope"});
  cases.back().request.set_model("nope");
  for (const Case& c : cases) {
    v1::DecodeResponse response;
    const grpc::Status s = Call(c.request, &response);
    EXPECT_EQ(s.error_code(), c.code) << c.field << ": " << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), c.field)) << s.error_message();
  }
  EXPECT_EQ(decoding_->batches(), 0);
}

TEST_F(LensServiceTest, GenerateStreamsEveryTokenThenTheFinish) {
  StartServer();
  v1::GenerateRequest request;
  request.set_model("fake");
  request.mutable_input()->mutable_tokens()->add_ids(10);
  request.set_max_new_tokens(5);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      lens_->Generate(&context, request);
  std::vector<int64_t> tokens;
  v1::GenerateResponse message;
  std::string finish;
  while (reader->Read(&message)) {
    if (message.has_token()) tokens.push_back(message.token().id());
    if (message.finished()) finish = message.finish_reason();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, (std::vector<int64_t>{11, 12, 13, 14, 15}));
  EXPECT_EQ(finish, "length");
}

TEST_F(LensServiceTest, AnUnloadUnderHeldWorkAnswersEveryCallAndLetsGoOfTheModel) {
  StartServer();
  decoding_->Hold();
  constexpr int kCalls = 6;
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> callers;
  callers.reserve(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      v1::DecodeResponse response;
      statuses[i] = Call(Request({i, 1, 2}), &response);
    });
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (decoding_->waiting() == 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  std::thread unloader([&] {
    std::unique_ptr<v1::Models::Stub> models = v1::Models::NewStub(server_->channel());
    grpc::ClientContext context;
    v1::UnloadModelRequest request;
    request.set_model("fake");
    v1::UnloadModelResponse response;
    const grpc::Status s = models->UnloadModel(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  });
  absl::SleepFor(absl::Milliseconds(300));
  decoding_->Release();  // the running batch ends; queued calls were refused at the unload
  unloader.join();
  for (std::thread& t : callers) t.join();
  for (const grpc::Status& s : statuses) {
    EXPECT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::UNAVAILABLE) << s.error_message();
  }
  EXPECT_EQ(server_->live_models(), 0);
  v1::DecodeResponse response;
  EXPECT_EQ(Call(Request({1}), &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace lensd::server
