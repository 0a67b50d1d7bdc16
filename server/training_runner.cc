#include "server/training_runner.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

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

absl::StatusOr<ChunkedData> TrainingRunner::LoadData(const TrainLensSpec& spec,
                                                     const LoadedModel& model) const {
  const DataSpec& data = spec.data;
  std::vector<std::string> documents;
  if (!data.path.empty()) {
    LENSD_ASSIGN_OR_RETURN(const std::string path, ResolveDataPath(data_root_, data.path));
    if (absl::EndsWith(path, ".u16") || absl::EndsWith(path, ".u32")) {
      return ChunkTokenFile(path, spec.seq_len, model.model->info().vocab_size);
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
  return ChunkDocuments(documents, *model.tokenizer, eos_text, spec.seq_len);
}

absl::StatusOr<std::string> TrainingRunner::Run(const JobRecord& job, JobContext& context) {
  if (job.kind != "train") {
    return absl::UnimplementedError(absl::StrCat("job kind \"", job.kind, "\" is not run here"));
  }
  LENSD_ASSIGN_OR_RETURN(const TrainLensSpec spec, TrainLensSpec::FromJson(job.spec));
  LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> model, registry_->Get(job.model));
  LENSD_ASSIGN_OR_RETURN(const ChunkedData data, LoadData(spec, *model));
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
    (void)context.Progress(p.step, ProgressJson(p).dump());
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
                        {"final_layer_losses", result.final_layer_losses},
                        {"nats_to_bits_per_byte", data.nats_to_bits_per_byte}}
      .dump();
}

}  // namespace lensd::server
