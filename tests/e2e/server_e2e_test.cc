// The server end to end: the real lensd binary on loopback, called through real channels. Auth
// and roles, every RPC, field validation, batching under concurrent clients with answers equal to
// a direct engine call, cancellation and deadlines that stop the worker, unloading under load,
// health and metrics.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/engine/served/engine_factory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::lensd::v1;

constexpr char kPrompt[] = "In the beginning God created the heaven and the earth.";

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new LensdProcess({"--models=kjv-gpt2", "--batch_max_delay_us=20000",
                                "--max_requests_per_tenant=200", "--max_new_tokens=1500"});
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Stop(), 0) << server_->Log();
    delete server_;
  }
  std::unique_ptr<v1::Lens::Stub> lens() { return v1::Lens::NewStub(server_->channel()); }
  std::unique_ptr<v1::Models::Stub> models() { return v1::Models::NewStub(server_->channel()); }
  v1::DecodeRequest DecodeOf(const std::string& text) {
    v1::DecodeRequest r;
    r.set_model("kjv-gpt2");
    r.mutable_input()->set_text(text);
    return r;
  }
  grpc::Status Decode(const v1::DecodeRequest& r, v1::DecodeResponse* out,
                      const std::string& token = "") {
    return lens()->Decode(Context(token.empty() ? server_->read_token() : token).get(), r, out);
  }

  static LensdProcess* server_;
};
LensdProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, AuthNeedsATokenAndAdminRpcsNeedTheAdminRole) {
  v1::ListModelsResponse list;
  grpc::Status s = models()->ListModels(Context("").get(), {}, &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("Bearer"));
  s = models()->ListModels(Context("not-a-token").get(), {}, &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(models()->ListModels(Context(server_->read_token()).get(), {}, &list).ok());
  v1::LoadModelRequest load;
  load.set_model("slow-gpt2");
  v1::ModelInfo info;
  s = models()->LoadModel(Context(server_->read_token()).get(), load, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("admin"));
  v1::UnloadModelRequest unload;
  unload.set_model("kjv-gpt2");
  v1::UnloadModelResponse freed;
  s = models()->UnloadModel(Context(server_->read_token()).get(), unload, &freed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(server_->Health(), "SERVING");  // health needs no token
}

TEST_F(ServerTest, ModelsTokenizeAndServerInfo) {
  v1::ListModelsResponse list;
  ASSERT_TRUE(models()->ListModels(Context(server_->read_token()).get(), {}, &list).ok());
  ASSERT_EQ(list.models_size(), 2);
  EXPECT_EQ(list.models(0).name(), "kjv-gpt2");
  EXPECT_EQ(list.models(0).state(), v1::MODEL_STATE_READY);
  EXPECT_EQ(list.models(0).num_layers(), 6);
  EXPECT_EQ(list.models(1).state(), v1::MODEL_STATE_AVAILABLE);
  v1::GetModelRequest get;
  get.set_model("kjv-gpt2");
  v1::ModelInfo info;
  ASSERT_TRUE(models()->GetModel(Context(server_->read_token()).get(), get, &info).ok());
  EXPECT_THAT(info.hook_points(), ::testing::Contains("blocks.5.hook_resid_post"));
  get.set_model("missing");
  EXPECT_EQ(models()->GetModel(Context(server_->read_token()).get(), get, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::TokenizeRequest tok;
  tok.set_model("kjv-gpt2");
  tok.set_text(kPrompt);
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(models()->Tokenize(Context(server_->read_token()).get(), tok, &tokens).ok());
  ASSERT_GT(tokens.tokens_size(), 5);
  v1::DetokenizeRequest detok;
  detok.set_model("kjv-gpt2");
  for (const auto& t : tokens.tokens()) detok.add_ids(t.id());
  v1::DetokenizeResponse text;
  ASSERT_TRUE(models()->Detokenize(Context(server_->read_token()).get(), detok, &text).ok());
  EXPECT_EQ(text.text(), kPrompt);

  v1::ServerInfo server;
  ASSERT_TRUE(models()->GetServerInfo(Context(server_->read_token()).get(), {}, &server).ok());
  EXPECT_EQ(server.tenant(), "reader");
  EXPECT_EQ(server.role(), "read");
  EXPECT_TRUE(server.auth_enabled());
  EXPECT_EQ(server.limits().max_new_tokens(), 1500);
  ASSERT_GE(server.devices_size(), 1);
  const v1::DeviceInfo& cpu = server.devices(0);
  EXPECT_EQ(cpu.name(), "cpu");
  EXPECT_GT(cpu.used_bytes(), 0);
  // The machine's memory as the OS reports it (CUDA's allocator figures are zero on the CPU).
  EXPECT_EQ(cpu.total_bytes(),
            static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE));
  EXPECT_GT(cpu.free_bytes(), 0);
  EXPECT_LT(cpu.free_bytes(), cpu.total_bytes());
  EXPECT_EQ(cpu.allocated_bytes(), 0);
  // --cpu_precision=auto: bfloat16 autocast exactly where the CPU has bfloat16 arithmetic.
  EXPECT_EQ(server.cpu_training_precision(),
            __builtin_cpu_supports("avx512bf16") ? "bfloat16" : "float32");
}

TEST_F(ServerTest, DecodeMatchesTheEngineCalledDirectly) {
  v1::DecodeRequest request = DecodeOf(kPrompt);
  request.set_top_k(3);
  v1::DecodeResponse response;
  ASSERT_TRUE(Decode(request, &response).ok());
  auto direct = engine::LoadServedModel(LENSD_E2E_REPOSITORY "/kjv-gpt2", {});
  ASSERT_TRUE(direct.ok());
  DecodeSpec spec;
  for (const auto& t : response.input_tokens()) spec.tokens.push_back(t.id());
  spec.top_k = 3;
  const DecodeSpec* one = &spec;
  auto expected = (*direct)->Decode(absl::MakeConstSpan(&one, 1), nullptr, nullptr);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const DecodeOutput& e = expected->front();
  ASSERT_EQ(response.rows_size(), 7);  // 6 lens layers and the output
  EXPECT_TRUE(response.rows(6).is_output());
  EXPECT_EQ(response.units(), "nats");
  const size_t columns = e.positions.size();
  for (int r = 0; r < response.rows_size(); ++r) {
    for (size_t p = 0; p < columns; ++p) {
      const v1::DecodeCell& cell = response.rows(r).cells(static_cast<int>(p));
      const size_t i = static_cast<size_t>(r) * columns + p;
      EXPECT_EQ(cell.top(0).id(), e.top_ids[i * 3]);
      EXPECT_NEAR(cell.top(0).prob(), e.top_probs[i * 3], 1e-5);
      EXPECT_NEAR(cell.entropy(), e.entropy[i], 1e-4);
      EXPECT_NEAR(cell.forward_kl(), e.forward_kl[i], 1e-4);
      EXPECT_EQ(cell.target_rank(), e.target_rank[i]);
    }
  }
}

TEST_F(ServerTest, BadFieldsAreRefusedWithTheirNames) {
  const auto expect = [&](const v1::DecodeRequest& r, grpc::StatusCode code,
                          const std::string& field) {
    v1::DecodeResponse out;
    const grpc::Status s = Decode(r, &out);
    EXPECT_EQ(s.error_code(), code) << field << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(field));
  };
  v1::DecodeRequest r = DecodeOf(kPrompt);
  r.add_layers(6);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "layers");
  r = DecodeOf("And God said");
  r.add_positions(40);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "positions");
  r = DecodeOf(kPrompt);
  r.set_top_k(5000);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "top_k");
  r = DecodeOf(kPrompt);
  r.add_statistics(static_cast<v1::Statistic>(99));
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "statistics");
  r = DecodeOf("");
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "input");
  r = DecodeOf(kPrompt);
  r.add_targets(3);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "targets");
  r = DecodeOf(kPrompt);
  r.add_statistics(v1::STATISTIC_LOG_PROB_DIFF);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "anti_targets");
  r = DecodeOf(kPrompt);
  r.set_lens("tuned-missing");
  expect(r, grpc::StatusCode::NOT_FOUND, "lens");
  r = DecodeOf(kPrompt);
  r.set_model("");
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "model");
  r = DecodeOf(kPrompt);
  r.set_model("slow-gpt2");
  expect(r, grpc::StatusCode::FAILED_PRECONDITION, "not loaded");
  r = DecodeOf(kPrompt);
  r.mutable_input()->mutable_tokens()->add_ids(999999);
  expect(r, grpc::StatusCode::INVALID_ARGUMENT, "input");

  v1::GenerateRequest g;
  g.set_model("kjv-gpt2");
  g.mutable_input()->set_text(kPrompt);
  g.set_temperature(-1);
  const auto reader_context = Context(server_->read_token());
  auto reader = lens()->Generate(reader_context.get(), g);
  v1::GenerateResponse message;
  while (reader->Read(&message)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("temperature"));

  v1::GetActivationsRequest a;
  a.set_model("kjv-gpt2");
  a.mutable_input()->set_text(kPrompt);
  a.add_hook_points("blocks.9.hook_resid_pre");
  const auto chunks_context = Context(server_->read_token());
  auto chunks = lens()->GetActivations(chunks_context.get(), a);
  v1::TensorChunk chunk;
  while (chunks->Read(&chunk)) {
  }
  s = chunks->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("hook_points"));
}

TEST_F(ServerTest, ConcurrentClientsAreBatchedAndAllGetTheirOwnAnswers) {
  const std::vector<std::string> prompts = {"And God said", "In the beginning God",
                                            "The LORD is my shepherd", "Blessed are the meek"};
  std::map<std::string, v1::DecodeResponse> alone;
  for (const std::string& p : prompts) ASSERT_TRUE(Decode(DecodeOf(p), &alone[p]).ok());
  std::atomic<int> wrong{0};
  std::atomic<int> max_batch{0};
  std::vector<std::thread> clients;
  clients.reserve(16);
  for (int c = 0; c < 16; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 4; ++i) {
        const std::string& p = prompts[static_cast<size_t>(c + i) % prompts.size()];
        v1::DecodeResponse out;
        if (!Decode(DecodeOf(p), &out).ok()) {
          ++wrong;
          continue;
        }
        max_batch = std::max(max_batch.load(), out.batch_size());
        const v1::DecodeResponse& want = alone[p];
        for (int r = 0; r < want.rows_size(); ++r) {
          for (int x = 0; x < want.rows(r).cells_size(); ++x) {
            const auto& a = out.rows(r).cells(x);
            const auto& b = want.rows(r).cells(x);
            if (a.top(0).id() != b.top(0).id() ||
                std::abs(a.top(0).prob() - b.top(0).prob()) > 1e-4 ||
                std::abs(a.entropy() - b.entropy()) > 1e-3) {
              ++wrong;
            }
          }
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(max_batch, 1) << "16 concurrent clients never shared a batch";
}

TEST_F(ServerTest, GenerateStreamsTokensAndActivationsStreamTensors) {
  v1::GenerateRequest g;
  g.set_model("kjv-gpt2");
  g.mutable_input()->set_text("And God said");
  g.set_layer(6);
  g.set_greedy(true);
  g.set_max_new_tokens(8);
  g.set_ignore_eos(true);
  const auto reader_context = Context(server_->read_token());
  auto reader = lens()->Generate(reader_context.get(), g);
  std::vector<int64_t> tokens;
  v1::GenerateResponse message;
  std::string text;
  while (reader->Read(&message)) {
    tokens.push_back(message.token().id());
    if (message.finished()) text = message.text();
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(tokens.size(), 8u);
  EXPECT_FALSE(text.empty());
  // Greedy from the model's own output: the first token is the output row's top-1 at the end.
  v1::DecodeResponse d;
  ASSERT_TRUE(Decode(DecodeOf("And God said"), &d).ok());
  EXPECT_EQ(tokens[0], d.rows(6).cells(d.rows(6).cells_size() - 1).top(0).id());

  v1::GetActivationsRequest a;
  a.set_model("kjv-gpt2");
  a.mutable_input()->set_text(kPrompt);
  a.add_hook_points("blocks.2.hook_resid_pre");
  a.add_hook_points("blocks.0.attn.hook_pattern");
  a.set_chunk_bytes(4096);
  const auto chunks_context = Context(server_->read_token());
  auto chunks = lens()->GetActivations(chunks_context.get(), a);
  std::map<std::string, std::string> data;
  std::map<std::string, std::vector<int64_t>> shapes;
  v1::TensorChunk chunk;
  while (chunks->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), static_cast<int64_t>(data[chunk.name()].size()));
    data[chunk.name()] += chunk.data();
    shapes[chunk.name()].assign(chunk.shape().begin(), chunk.shape().end());
  }
  ASSERT_TRUE(chunks->Finish().ok());
  const int64_t n = d.input_tokens_size() + 4;  // kPrompt is longer than "And God said"
  ASSERT_EQ(shapes["blocks.2.hook_resid_pre"].size(), 3u);
  EXPECT_EQ(shapes["blocks.2.hook_resid_pre"][2], 128);
  EXPECT_EQ(data["blocks.2.hook_resid_pre"].size(),
            static_cast<size_t>(shapes["blocks.2.hook_resid_pre"][1] * 128 * 4));
  EXPECT_EQ(shapes["blocks.0.attn.hook_pattern"][1], 4);  // heads
  (void)n;
}

TEST_F(ServerTest, MetricsScrapeHoldsTheDocumentedSeries) {
  v1::DecodeResponse out;
  ASSERT_TRUE(Decode(DecodeOf(kPrompt), &out).ok());
  const std::string body = server_->Scrape();
  for (const char* series :
       {"lensd_requests_total{code=\"OK\",method=\"Decode\"}",
        "lensd_request_duration_seconds_bucket", "lensd_queue_depth{model=\"kjv-gpt2\"}",
        "lensd_batch_size_bucket", "lensd_tokens_processed_total{model=\"kjv-gpt2\"}",
        "lensd_model_memory_bytes{device=\"cpu\",model=\"kjv-gpt2\"}", "lensd_models_loaded 1",
        "lensd_device_memory_budget_bytes{device=\"cpu\"}",
        "lensd_device_memory_total_bytes{device=\"cpu\"}",
        "lensd_device_memory_free_bytes{device=\"cpu\"}"}) {
    EXPECT_THAT(body, HasSubstr(series));
  }
  EXPECT_THAT(server_->Log(), HasSubstr("\"method\":\"Decode\""));
  EXPECT_THAT(server_->Log(), HasSubstr("\"request_id\""));
}

// The slow model: 8 blocks of width 512, so that 1,000 new tokens take seconds.
class SlowModelTest : public ServerTest {
 protected:
  static void Load() {
    v1::LoadModelRequest load;
    load.set_model("slow-gpt2");
    v1::ModelInfo info;
    const grpc::Status s = v1::Models::NewStub(server_->channel())
                               ->LoadModel(Context(server_->admin_token()).get(), load, &info);
    // The fixture's server is shared: an earlier test may have loaded it.
    ASSERT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  }
  v1::GenerateRequest Long(int tokens) {
    v1::GenerateRequest g;
    g.set_model("slow-gpt2");
    g.mutable_input()->set_text("And God said");
    g.set_greedy(true);
    g.set_ignore_eos(true);
    g.set_max_new_tokens(tokens);
    return g;
  }
  // Seconds a short decode on the slow model takes to come back.
  double DecodeSeconds() {
    const auto start = std::chrono::steady_clock::now();
    v1::DecodeRequest r = DecodeOf("And God said");
    r.set_model("slow-gpt2");
    v1::DecodeResponse out;
    EXPECT_TRUE(Decode(r, &out).ok());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
};

TEST_F(SlowModelTest, DeadlineAndCancelStopTheWorker) {
  Load();
  // Uncancelled, 1,000 tokens keep the model's single worker busy for seconds.
  auto context = Context(server_->read_token(), 0.3);
  auto reader = lens()->Generate(context.get(), Long(1000));
  v1::GenerateResponse message;
  int received = 0;
  while (reader->Read(&message)) ++received;
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The worker stopped: a decode queued behind it comes back at once (well under the seconds the
  // rest of the generation would take; 3 s leaves room for a loaded 2-core CI machine, where one
  // run measured 1.5 s while other tests ran beside it).
  EXPECT_LT(DecodeSeconds(), 3.0);

  auto cancel_context = Context(server_->read_token());
  auto cancelled = lens()->Generate(cancel_context.get(), Long(1000));
  ASSERT_TRUE(cancelled->Read(&message));
  cancel_context->TryCancel();
  while (cancelled->Read(&message)) {
  }
  EXPECT_EQ(cancelled->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(DecodeSeconds(), 3.0);
  EXPECT_THAT(server_->Log(), HasSubstr("\"code\":\"DEADLINE_EXCEEDED\""));
}

TEST_F(SlowModelTest, UnloadUnderLoadLosesNoRequest) {
  Load();
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};
  std::atomic<int> lost{0};
  std::vector<std::thread> clients;
  clients.reserve(6);
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([&] {
      const auto reader_context = Context(server_->read_token());
      auto reader = lens()->Generate(reader_context.get(), Long(40));
      v1::GenerateResponse message;
      int n = 0;
      while (reader->Read(&message)) ++n;
      const grpc::Status s = reader->Finish();
      if (s.ok() && n == 40) {
        ++ok;
      } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                 s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        ++refused;  // arrived after the unload began: refused cleanly, retryable
      } else {
        ++lost;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  v1::UnloadModelRequest unload;
  unload.set_model("slow-gpt2");
  v1::UnloadModelResponse freed;
  const grpc::Status s =
      models()->UnloadModel(Context(server_->admin_token()).get(), unload, &freed);
  for (auto& t : clients) t.join();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(freed.freed_bytes(), 100 << 20);
  EXPECT_EQ(lost, 0);
  EXPECT_GT(ok, 0);
  EXPECT_EQ(ok + refused, 6);
  v1::GetModelRequest get;
  get.set_model("slow-gpt2");
  v1::ModelInfo info;
  ASSERT_TRUE(models()->GetModel(Context(server_->read_token()).get(), get, &info).ok());
  EXPECT_EQ(info.state(), v1::MODEL_STATE_AVAILABLE);
}

}  // namespace
}  // namespace lensd::e2e
