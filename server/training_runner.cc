#include "server/training_runner.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log_status.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/patching_job.h"

namespace lensd::server {
namespace {

nlohmann::json ProgressJson(const TrainingProgress& p) {
  return {{"step", p.step},
          {"num_steps", p.num_steps},
          {"layer_losses", p.layer_losses},
          {"tokens_per_second", p.tokens_per_second},
          {"eta_seconds", p.eta_seconds}};
}

}  // namespace

absl::StatusOr<ChunkedData> TrainingRunner::LoadData(const DataSpec& data, int64_t seq_len,
                                                     const LoadedModel& model) const {
  std::vector<std::string> documents;
  if (!data.path.empty()) {
    LENSD_ASSIGN_OR_RETURN(const std::string path, ResolveDataPath(data_root_, data.path));
    if (absl::EndsWith(path, ".u16") || absl::EndsWith(path, ".u32")) {
      return ChunkTokenFile(path, seq_len, model.model->info().vocab_size);
    }
    LENSD_ASSIGN_OR_RETURN(documents, ReadDocuments(path, data.text_field));
  } else {
    documents = data.texts;
  }
  if (model.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", model.name, " has no tokenizer.json: give pre-tokenized .u16 or .u32 data"));
  }
  const std::vector<int64_t>& eos = model.model->info().eos_token_ids;
  std::string eos_text = "<|endoftext|>";  // tuned-lens's fallback without an EOS token
  if (!eos.empty()) {
    eos_text = model.tokenizer->IdToToken(static_cast<int32_t>(eos.front())).value_or(eos_text);
  }
  return ChunkDocuments(documents, *model.tokenizer, eos_text, seq_len);
}

absl::StatusOr<std::string> TrainingRunner::Run(const JobRecord& job, JobContext& context) {
  if (job.kind == "train") return Train(job, context);
  if (job.kind == "eval") return Evaluate(job, context);
  if (job.kind == "patch") {
    LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> model,
                           registry_->Get(job.model));
    return RunPatchingJob(job.spec, *model, limits_, context);
  }
  return absl::UnimplementedError(absl::StrCat("job kind \"", job.kind, "\" is not run here"));
}

absl::StatusOr<std::string> TrainingRunner::Evaluate(const JobRecord& job, JobContext& context) {
  LENSD_ASSIGN_OR_RETURN(const EvalLensSpec spec, EvalLensSpec::FromJson(job.spec));
  LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> model, registry_->Get(job.model));
  LENSD_ASSIGN_OR_RETURN(const ChunkedData data, LoadData(spec.data, spec.seq_len, *model));
  EvalLensRun run;
  run.spec = spec;
  run.seq_len = data.chunk_len;
  run.tokens = &data.tokens;
  run.order = ShuffledOrder(data.num_chunks(), spec.seed);
  run.keep_going = [&context] { return context.KeepGoing(); };
  const absl::Time start = absl::Now();
  const int64_t tokens_per_batch = spec.batch * data.chunk_len;
  run.on_batch = [&](int64_t done, int64_t total) {
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    TrainingProgress p{done, total, {}, 0, 0};
    p.tokens_per_second = seconds > 0 ? static_cast<double>(done * tokens_per_batch) / seconds : 0;
    p.eta_seconds = seconds * static_cast<double>(total - done) / static_cast<double>(done);
    LogIfError(context.Progress(done, ProgressJson(p).dump()), "job store: recording progress");
  };
  LENSD_ASSIGN_OR_RETURN(const LensMetrics metrics, model->model->EvaluateLenses(run));
  const int64_t sequences = std::min<int64_t>(metrics.batches * spec.batch, data.num_chunks());
  // Pre-tokenized data has no bytes to count: its metrics are reported in bits per token.
  const bool per_byte = data.nats_to_bits_per_byte > 0;
  const double scale = per_byte ? data.nats_to_bits_per_byte : 1.0 / std::log(2.0);
  return nlohmann::json{
      {"lenses", spec.lenses},
      {"batches", metrics.batches},
      {"sequences", sequences},
      {"tokens", sequences * data.chunk_len},
      {"seconds", absl::ToDoubleSeconds(absl::Now() - start)},
      {"units", per_byte ? "bits_per_byte" : "bits_per_token"},
      {"nats_to_bits_per_byte", per_byte ? nlohmann::json(scale) : nlohmann::json(nullptr)},
      {"aggregate_metrics", nlohmann::json::parse(AggregateMetricsJson(metrics, scale))},
      {"aggregate_metrics_nats", nlohmann::json::parse(AggregateMetricsJson(metrics, 1.0))}}
      .dump();
}

absl::StatusOr<std::string> TrainingRunner::Train(const JobRecord& job, JobContext& context) {
  LENSD_ASSIGN_OR_RETURN(const TrainLensSpec spec, TrainLensSpec::FromJson(job.spec));
  LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> model, registry_->Get(job.model));
  LENSD_ASSIGN_OR_RETURN(const ChunkedData data, LoadData(spec.data, spec.seq_len, *model));
  TrainLensRun run;
  run.spec = spec;
  run.seq_len = data.chunk_len;
  run.tokens = &data.tokens;
  run.order = ShuffledOrder(data.num_chunks(), spec.seed);
  run.resume_from = job.checkpoint;
  LENSD_ASSIGN_OR_RETURN(run.checkpoint_dir, context.CheckpointDir());
  run.output_dir =
      (std::filesystem::path(repository_) / job.model / "lenses" / spec.lens_name).string();
  run.base_model = job.model;
  run.keep_going = [&context] { return context.KeepGoing(); };
  run.on_step = [&context](const TrainingProgress& p) {
    LogIfError(context.Progress(p.step, ProgressJson(p).dump()), "job store: recording progress");
  };
  run.on_checkpoint = [&context](int64_t step, const std::string& path) {
    return context.Checkpointed(step, path);
  };
  LENSD_ASSIGN_OR_RETURN(const TrainLensResult result, model->model->TrainLens(run));
  LENSD_ASSIGN_OR_RETURN(const LensDescription lens,
                         registry_->LoadLens(job.model, spec.lens_name));
  return nlohmann::json{{"lens", lens.name},
                        {"path", run.output_dir},
                        {"steps", result.steps},
                        {"tokens", result.tokens},
                        {"seconds", result.seconds},
                        {"resumed_from_step", result.resumed_from_step},
                        {"final_layer_losses", result.final_layer_losses},
                        {"nats_to_bits_per_byte", data.nats_to_bits_per_byte}}
      .dump();
}

}  // namespace lensd::server
