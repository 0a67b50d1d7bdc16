// Evaluation jobs through the real server: the metrics of a watched job equal
// ServedModel::EvaluateLenses on the same chunks in the same order (the engine's evaluation is
// held to tuned-lens's own eval by eval_parity_test); lensctl eval prints the table and writes
// aggregate_metrics.json; text data reports bits per byte; bad input is refused by name.
#include <cmath>

#include "core/engine/served/engine_factory.h"
#include "core/jobs/training_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/training_fixture.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;

class EvalTest : public TrainingTest {
 protected:
  // Trains the tuned lens "t" through a job (it is loaded when the job succeeds).
  void TrainLens() {
    v1::Job job;
    ASSERT_TRUE(Submit(Job("t", 6), &job).ok());
    ASSERT_EQ(Finished(job.id()).state(), v1::JOB_STATE_SUCCEEDED);
  }
  v1::Job Finished(const std::string& id) {
    return WaitFor(id, [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  }
  static v1::SubmitJobRequest Eval(const std::vector<std::string>& lenses) {
    v1::SubmitJobRequest r;
    r.set_model("kjv-gpt2");
    v1::EvalLensJob* e = r.mutable_eval_lens();
    for (const std::string& lens : lenses) e->add_lenses(lens);
    e->mutable_data()->set_path("tokens.u16");
    e->set_seq_len(16);
    e->set_batch(4);
    e->set_tokens(int64_t{16} * 4 * 5);  // five batches of 4 x 16 tokens
    e->set_seed(7);
    return r;
  }
};

TEST_F(EvalTest, MetricsEqualTheEngineOnTheSameChunks) {
  StartServer();
  TrainLens();
  v1::Job job;
  ASSERT_TRUE(Submit(Eval({}), &job).ok());  // default: logit and every tuned lens
  EXPECT_EQ(job.kind(), "eval");
  const v1::Job done = Finished(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.reason();
  EXPECT_EQ(done.step(), 5);
  EXPECT_EQ(done.num_steps(), 5);
  const nlohmann::json result = nlohmann::json::parse(done.result_json());
  EXPECT_EQ(result["lenses"], nlohmann::json({"logit", "t"}));
  EXPECT_EQ(result["batches"], 5);
  EXPECT_EQ(result["tokens"], 320);
  EXPECT_EQ(result["units"], "bits_per_token");  // pre-tokenized data has no bytes

  auto direct = engine::LoadServedModel(LENSD_E2E_REPOSITORY "/kjv-gpt2", {});
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_TRUE((*direct)->LoadLens("t", (dir_ / "repo/kjv-gpt2/lenses/t").string()).ok());
  auto data = ChunkTokenFile((dir_ / "data/tokens.u16").string(), 16, 4096);
  ASSERT_TRUE(data.ok()) << data.status();
  EvalLensRun run;
  run.spec.lenses = {"logit", "t"};
  run.spec.seq_len = 16;
  run.spec.batch = 4;
  run.spec.tokens = 320;
  run.seq_len = 16;
  run.tokens = &data->tokens;
  run.order = ShuffledOrder(data->num_chunks(), 7);
  auto metrics = (*direct)->EvaluateLenses(run);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const nlohmann::json expected = nlohmann::json::parse(AggregateMetricsJson(*metrics, 1.0));
  const nlohmann::json& nats = result["aggregate_metrics_nats"];
  const nlohmann::json& bits = result["aggregate_metrics"];
  int compared = 0;
  for (const auto& [lens, by_metric] : expected.items()) {
    for (const auto& [metric, by_layer] : by_metric.items()) {
      for (const auto& [layer, value] : by_layer.items()) {
        const double want = value.get<double>();
        EXPECT_NEAR(nats[lens][metric][layer].get<double>(), want, 1e-6 * std::abs(want) + 1e-9)
            << lens << " " << metric << " " << layer;
        EXPECT_NEAR(bits[lens][metric][layer].get<double>(), want / std::log(2.0),
                    1e-6 * std::abs(want) + 1e-9);
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 2 * 3 * 6 + 2);  // two lenses x three metrics x six layers, and baseline
  // The lens learned something in six steps: its KL to the model is below the logit lens's.
  EXPECT_LT(nats["t"]["kl"]["layer_0"].get<double>(), nats["logit"]["kl"]["layer_0"].get<double>());
}

TEST_F(EvalTest, LensctlEvalPrintsTheTableAndWritesAggregateMetrics) {
  StartServer();
  std::string verses;
  for (int i = 0; i < 30; ++i) verses += "And God saw the light, that it was good. ";
  const std::string out = (dir_ / "aggregate_metrics.json").string();
  const auto [text, rc] =
      RunCommand("LENSD_ADDRESS=127.0.0.1:" + std::to_string(server_->port()) +
                 " LENSD_TOKEN=" + server_->admin_token() +
                 " " LENSCTL_BINARY " eval --lenses logit --seq_len 8 --batch 2 --watch --output " +
                 out + " '" + verses + "'");
  ASSERT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("logit.ce"));
  EXPECT_THAT(text, HasSubstr("(bits_per_byte)"));
  EXPECT_THAT(text, HasSubstr("baseline ce"));
  std::ifstream file(out);
  const nlohmann::json written = nlohmann::json::parse(file, nullptr, false);
  ASSERT_TRUE(written.is_object()) << out;
  EXPECT_EQ(written["logit"]["ce"].size(), 6u);
  EXPECT_TRUE(written["baseline"]["ce"].contains("final"));

  // The file is the job's aggregate_metrics, and bits per byte = nats x the data's ratio.
  v1::ListJobsRequest list;
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(training()->ListJobs(Context(server_->admin_token()).get(), list, &jobs).ok());
  ASSERT_EQ(jobs.jobs_size(), 1);
  const nlohmann::json result = nlohmann::json::parse(jobs.jobs(0).result_json());
  EXPECT_EQ(result["aggregate_metrics"], written);
  const double ratio = result["nats_to_bits_per_byte"].get<double>();
  EXPECT_GT(ratio, 0);
  const double nats = result["aggregate_metrics_nats"]["baseline"]["ce"]["final"].get<double>();
  EXPECT_NEAR(written["baseline"]["ce"]["final"].get<double>(), nats * ratio, 1e-9);
}

TEST_F(EvalTest, BadInputIsRefusedByName) {
  StartServer();
  v1::Job job;
  EXPECT_EQ(Submit(Eval({"logit"}), &job, server_->read_token()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status s = Submit(Eval({"logit", "missing"}), &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("\"missing\" is not loaded"));
  s = Submit(Eval({"logit", "logit"}), &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("named twice"));
  v1::SubmitJobRequest r = Eval({"logit"});
  r.mutable_eval_lens()->set_tokens(10);
  s = Submit(r, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tokens"));
  r = Eval({"logit"});
  r.mutable_eval_lens()->set_token_shift(16);
  EXPECT_THAT(Submit(r, &job).error_message(), HasSubstr("token_shift"));
  r = Eval({"logit"});
  r.mutable_eval_lens()->mutable_data()->set_path("/etc/passwd");
  EXPECT_EQ(Submit(r, &job).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // A malformed line fails the job with its file and line; the server goes on.
  r = Eval({"logit"});
  r.mutable_eval_lens()->mutable_data()->set_path("bad.jsonl");
  ASSERT_TRUE(Submit(r, &job).ok());
  const v1::Job failed = Finished(job.id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.reason(), HasSubstr("bad.jsonl:2"));
  ASSERT_TRUE(Submit(Eval({"logit"}), &job).ok());
  EXPECT_EQ(Finished(job.id()).state(), v1::JOB_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace lensd::e2e
