// lensctl's job commands: train and eval (submit, and --watch), jobs (list), job (one), watch
// (a progress bar until the job ends) and cancel.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "clients/cli/commands.h"
#include "clients/cli/output.h"
#include "google/protobuf/util/json_util.h"
#include "lensd/v1/training.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace lensctl {
namespace {

namespace v1 = lensd::v1;

const char* StateName(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED:
      return "queued";
    case v1::JOB_STATE_RUNNING:
      return "running";
    case v1::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case v1::JOB_STATE_FAILED:
      return "failed";
    case v1::JOB_STATE_CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

std::string Line(const v1::Job& j) {
  return absl::StrFormat("%-22s %-10s %-12s %-10s %6d/%-6d %s", j.id(), j.tenant(), j.model(),
                         StateName(j.state()), j.step(), j.num_steps(), j.reason());
}

// "[#####.....] 12/250 steps  last-layer loss 1.234  4321 tok/s  ETA 2m03s"
std::string Bar(const v1::Job& j) {
  constexpr int kWidth = 30;
  const int filled = j.num_steps() > 0 ? static_cast<int>(kWidth * j.step() / j.num_steps()) : 0;
  std::string bar = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "]";
  std::string loss =
      j.layer_losses_size() > 0
          ? absl::StrFormat("  last-layer loss %.4f", j.layer_losses(j.layer_losses_size() - 1))
          : "";
  const std::string rate =
      j.tokens_per_second() > 0 ? absl::StrFormat("  %.0f tok/s", j.tokens_per_second()) : "";
  const int eta = static_cast<int>(j.eta_seconds());
  return absl::StrFormat("%s %d/%d %s%s%s  ETA %dm%02ds  %s", bar, j.step(), j.num_steps(),
                         j.kind() == "patch" ? "patched runs" : "steps", loss, rate, eta / 60,
                         eta % 60, StateName(j.state()));
}

int PrintJob(const v1::Job& job, bool json) {
  if (json) {
    std::string text;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    (void)google::protobuf::util::MessageToJsonString(job, &text, options);
    std::cout << text;
    return 0;
  }
  std::cout << Line(job) << "\n";
  v1::ActivationPatchingResult grids;
  if (job.kind() == "patch" && !job.result_json().empty() &&
      google::protobuf::util::JsonStringToMessage(job.result_json(), &grids).ok()) {
    std::cout << PatchingTables(grids);
  } else if (!job.result_json().empty()) {
    std::cout << "result: " << job.result_json() << "\n";
  }
  return 0;
}

// Streams the job's updates as a progress bar (redrawn in place on a terminal); 0 when it
// succeeded, 1 otherwise. The last update goes to `last` when given.
int Follow(const Connection& c, const std::string& id, v1::Job* last = nullptr) {
  v1::WatchJobRequest q;
  q.set_id(id);
  auto context = c.Context();
  context->set_deadline(std::chrono::system_clock::time_point::max());  // as long as the job
  auto reader = v1::Training::NewStub(c.channel)->WatchJob(context.get(), q);
  const bool tty = isatty(STDERR_FILENO) != 0;
  v1::Job job;
  while (reader->Read(&job)) std::cerr << (tty ? "\r" : "") << Bar(job) << (tty ? "" : "\n");
  if (tty) std::cerr << "\n";
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  if (last != nullptr) {
    *last = job;
  } else {
    PrintJob(job, false);
  }
  return job.state() == v1::JOB_STATE_SUCCEEDED ? 0 : 1;
}

// An evaluation's aggregate metrics as a table: one row per layer, a ce/entropy/kl column triple
// per lens, in the result's units; the baseline below.
void PrintEvalTable(const nlohmann::json& result) {
  const nlohmann::json& m = result["aggregate_metrics"];
  std::vector<std::string> lenses;
  for (const auto& lens : result["lenses"]) lenses.push_back(lens.get<std::string>());
  std::cout << absl::StrFormat("%-8s", "layer");
  for (const std::string& lens : lenses) {
    for (const char* metric : {"ce", "entropy", "kl"}) {
      std::cout << absl::StrFormat(" %14s", absl::StrCat(lens, ".", metric));
    }
  }
  std::cout << "   (" << result["units"].get<std::string>() << ")\n";
  const size_t layers = lenses.empty() ? 0 : m[lenses[0]]["ce"].size();
  for (size_t l = 0; l < layers; ++l) {
    const std::string key = absl::StrCat("layer_", l);
    std::cout << absl::StrFormat("%-8d", l);
    for (const std::string& lens : lenses) {
      for (const char* metric : {"ce", "entropy", "kl"}) {
        std::cout << absl::StrFormat(" %14.4f", m[lens][metric][key].get<double>());
      }
    }
    std::cout << "\n";
  }
  std::cout << absl::StrFormat("baseline ce %.4f  entropy %.4f  (%d batches, %d tokens)\n",
                               m["baseline"]["ce"]["final"].get<double>(),
                               m["baseline"]["entropy"]["final"].get<double>(),
                               result["batches"].get<int64_t>(), result["tokens"].get<int64_t>());
}

// Sets the data source from --data, --text_field and the positional texts.
void SetData(const Parsed& p, v1::DataSource* data) {
  if (!p.Get("data").empty()) data->set_path(p.Get("data"));
  for (const std::string& text : p.positional) data->mutable_texts()->add_texts(text);
  if (!p.Get("text_field").empty()) data->set_text_field(p.Get("text_field"));
}

template <typename Message>
struct IntField {
  const char* name;
  void (Message::*set)(int64_t);
};

// Sets each integer option given; a usage error names the first that is not an integer.
template <typename Message>
std::optional<int> SetInts(const Parsed& p, std::initializer_list<IntField<Message>> fields,
                           Message* m) {
  for (const IntField<Message>& f : fields) {
    if (p.Get(f.name).empty()) continue;
    int64_t v = 0;
    if (!absl::SimpleAtoi(p.Get(f.name), &v)) {
      return Usage(absl::StrCat("--", f.name, ": an integer"));
    }
    (m->*f.set)(v);
  }
  return std::nullopt;
}

// Submits `q`; with --watch follows the job and returns its outcome (the last update in `last`).
int Submit(const Connection& c, const Parsed& p, const v1::SubmitJobRequest& q,
           v1::Job* last = nullptr) {
  v1::Job job;
  const grpc::Status s = v1::Training::NewStub(c.channel)->SubmitJob(c.Context().get(), q, &job);
  if (!s.ok()) return Fail(s);
  std::cout << "submitted " << job.id() << "\n";
  return p.Flag("watch") ? Follow(c, job.id(), last) : 0;
}

int Eval(const Connection& c, const Parsed& p) {
  v1::SubmitJobRequest q;
  q.set_model(p.Get("model"));
  v1::EvalLensJob* e = q.mutable_eval_lens();
  for (absl::string_view lens : absl::StrSplit(p.Get("lenses"), ',', absl::SkipEmpty())) {
    e->add_lenses(std::string(lens));
  }
  SetData(p, e->mutable_data());
  if (auto usage = SetInts<v1::EvalLensJob>(p,
                                            {{"seq_len", &v1::EvalLensJob::set_seq_len},
                                             {"batch", &v1::EvalLensJob::set_batch},
                                             {"tokens", &v1::EvalLensJob::set_tokens},
                                             {"token_shift", &v1::EvalLensJob::set_token_shift}},
                                            e)) {
    return *usage;
  }
  if (!p.Get("seed").empty()) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(p.Get("seed"), &v)) return Usage("--seed: an integer");
    e->set_seed(v);
  }
  if (!p.Get("output").empty() && !p.Flag("watch")) return Usage("--output needs --watch");
  v1::Job job;
  const int code = Submit(c, p, q, &job);
  if (code != 0 || !p.Flag("watch")) return code;
  const nlohmann::json result = nlohmann::json::parse(job.result_json());
  if (!p.Get("output").empty()) {
    std::ofstream out(p.Get("output"));
    out << result["aggregate_metrics"].dump();
    if (!out.good()) return Usage(absl::StrCat("--output: cannot write ", p.Get("output")));
  }
  PrintEvalTable(result);
  return 0;
}

int Train(const Connection& c, const Parsed& p) {
  v1::SubmitJobRequest q;
  q.set_model(p.Get("model"));
  v1::TrainLensJob* t = q.mutable_train_lens();
  t->set_lens_name(p.Get("lens_name"));
  SetData(p, t->mutable_data());
  t->set_loss(p.Get("loss"));
  t->set_bias_only(p.Flag("bias_only"));
  t->set_warm_start(p.Get("warm_start"));
  t->set_precision(p.Get("precision"));
  if (auto usage =
          SetInts<v1::TrainLensJob>(p,
                                    {{"num_steps", &v1::TrainLensJob::set_num_steps},
                                     {"seq_len", &v1::TrainLensJob::set_seq_len},
                                     {"tokens_per_step", &v1::TrainLensJob::set_tokens_per_step},
                                     {"micro_batch", &v1::TrainLensJob::set_micro_batch},
                                     {"checkpoint_every", &v1::TrainLensJob::set_checkpoint_every}},
                                    t)) {
    return *usage;
  }
  if (!p.Get("lr_scale").empty()) {
    double v = 0;
    if (!absl::SimpleAtod(p.Get("lr_scale"), &v)) return Usage("--lr_scale: a number");
    t->set_lr_scale(v);
  }
  if (!p.Get("seed").empty()) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(p.Get("seed"), &v)) return Usage("--seed: an integer");
    t->set_seed(v);
  }
  return Submit(c, p, q);
}

int Jobs(const Connection& c, const Parsed& p) {
  v1::ListJobsRequest q;
  if (p.Flag("all")) q.set_tenant("*");
  v1::ListJobsResponse r;
  const grpc::Status s = v1::Training::NewStub(c.channel)->ListJobs(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  std::cout << absl::StrFormat("%-22s %-10s %-12s %-10s %13s %s\n", "JOB", "TENANT", "MODEL",
                               "STATE", "STEP", "REASON");
  for (const v1::Job& j : r.jobs()) std::cout << Line(j) << "\n";
  return 0;
}

int OneJob(const Connection& c, const Parsed& p) {
  if (p.positional.size() != 1) return Usage("give one job id");
  v1::GetJobRequest q;
  q.set_id(p.positional[0]);
  v1::Job job;
  const grpc::Status s = v1::Training::NewStub(c.channel)->GetJob(c.Context().get(), q, &job);
  if (!s.ok()) return Fail(s);
  return PrintJob(job, p.Flag("json"));
}

int Watch(const Connection& c, const Parsed& p) {
  if (p.positional.size() != 1) return Usage("give one job id");
  return Follow(c, p.positional[0]);
}

int Cancel(const Connection& c, const Parsed& p) {
  if (p.positional.size() != 1) return Usage("give one job id");
  v1::CancelJobRequest q;
  q.set_id(p.positional[0]);
  v1::Job job;
  const grpc::Status s = v1::Training::NewStub(c.channel)->CancelJob(c.Context().get(), q, &job);
  if (!s.ok()) return Fail(s);
  std::cout << "cancelling " << job.id() << " (" << StateName(job.state()) << ")\n";
  return 0;
}

}  // namespace

std::vector<CommandEntry> JobCommands() {
  const OptionSpec json{"json", "print the job as JSON", "false", true};
  return {
      {{"train",
        "submit a tuned-lens training job (train role); texts after the options are inline data",
        "[<text> ...]",
        {{"model", "model name", "kjv-gpt2"},
         {"lens_name", "the new lens's folder name", ""},
         {"data", "a .jsonl, .txt, .u16 or .u32 file under the server's data root", ""},
         {"text_field", "the text field of .jsonl lines (default text)", ""},
         {"loss", "kl (default) or ce", ""},
         {"num_steps", "optimizer steps (default 250)", ""},
         {"seq_len", "tokens per sequence (default 2048)", ""},
         {"tokens_per_step", "tokens per step, a multiple of seq_len (default 262144)", ""},
         {"micro_batch", "sequences per forward pass (default 1)", ""},
         {"lr_scale", "learning-rate scale (default 1)", ""},
         {"warm_start", "a loaded tuned lens to start from", ""},
         {"bias_only", "train the biases only", "false", true},
         {"seed", "data shuffling seed (default 42)", ""},
         {"checkpoint_every", "steps between checkpoints (default 25)", ""},
         {"precision", "auto (bfloat16 autocast on a GPU), bfloat16 or float32", ""},
         {"watch", "follow the job with a progress bar until it ends", "false", true}}},
       Train},
      {{"eval",
        "submit a lens-evaluation job (train role): per-layer ce, entropy and KL in bits per byte "
        "as tuned-lens eval; texts after the options are inline data",
        "[<text> ...]",
        {{"model", "model name", "kjv-gpt2"},
         {"lenses", "comma-separated loaded lenses (default: logit and every tuned lens)", ""},
         {"data", "a .jsonl, .txt, .u16 or .u32 file under the server's data root", ""},
         {"text_field", "the text field of .jsonl lines (default text)", ""},
         {"seq_len", "tokens per sequence (default 2048)", ""},
         {"batch", "sequences per forward pass (default 1)", ""},
         {"tokens", "evaluate tokens / (batch x seq_len) batches (default: all the data)", ""},
         {"token_shift", "label shift of the cross-entropy (default 1)", ""},
         {"seed", "data shuffling seed (default 42)", ""},
         {"watch", "follow the job, then print the metrics per layer", "false", true},
         {"output", "with --watch: write aggregate_metrics.json here", ""}}},
       Eval},
      {{"jobs",
        "list training, evaluation and patching jobs, newest first",
        "",
        {{"all", "every tenant's (admin)", "false", true}}},
       Jobs},
      {{"job", "show one job", "<id>", {json}}, OneJob},
      {{"watch", "follow a job with a progress bar until it ends", "<id>", {}}, Watch},
      {{"cancel", "cancel a queued or running job (train role)", "<id>", {}}, Cancel},
  };
}

}  // namespace lensctl
