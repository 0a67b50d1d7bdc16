// lensd-train-bench: tuned-lens training throughput of the engine (RunLensTraining, as a training
// job runs it) on a model folder and a uint16 token file of [sequences, seq] in training order.
// Prints one JSON line with each step's end time; tests/bench/train_bench.py runs it beside
// tuned-lens's own training loop on the same checkpoint, data and CPU threads.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/served/engine_factory.h"
#include "core/engine/training/lens_training_run.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder");
ABSL_FLAG(std::string, tokens, "", "uint16 token ids, [sequences, seq] row-major, in order");
ABSL_FLAG(std::string, workdir, "", "an empty folder for the lens and checkpoints");
ABSL_FLAG(int, threads, 2, "intra-op CPU threads");
ABSL_FLAG(int64_t, seq, 128, "tokens per sequence");
ABSL_FLAG(int64_t, steps, 5, "optimizer steps");
ABSL_FLAG(int64_t, tokens_per_step, 512, "tokens per optimizer step");
ABSL_FLAG(int64_t, micro_batch, 2, "sequences per forward pass");
ABSL_FLAG(std::string, precision, "float32", "the job's precision: float32 | bfloat16 | auto");

int main(int argc, char** argv) {
  lensd::engine::UsePassiveOpenMpWaits(argv);
  absl::SetProgramUsageMessage(
      "Times tuned-lens training: lensd-train-bench --model DIR --tokens FILE --workdir DIR");
  absl::ParseCommandLine(argc, argv);
  lensd::engine::ConfigureRuntime(absl::GetFlag(FLAGS_threads));
  auto model = lensd::engine::LoadModel(absl::GetFlag(FLAGS_model), {});
  if (!model.ok()) return std::cerr << model.status() << "\n", 1;
  std::ifstream in(absl::GetFlag(FLAGS_tokens), std::ios::binary | std::ios::ate);
  std::vector<uint16_t> raw(static_cast<size_t>(in.tellg()) / 2);
  in.seekg(0).read(reinterpret_cast<char*>(raw.data()),
                   static_cast<std::streamsize>(raw.size() * 2));
  const std::vector<int32_t> tokens(raw.begin(), raw.end());

  lensd::TrainLensRun run;
  run.spec.lens_name = "bench";
  run.spec.num_steps = absl::GetFlag(FLAGS_steps);
  run.spec.seq_len = absl::GetFlag(FLAGS_seq);
  run.spec.tokens_per_step = absl::GetFlag(FLAGS_tokens_per_step);
  run.spec.micro_batch = absl::GetFlag(FLAGS_micro_batch);
  run.spec.precision = absl::GetFlag(FLAGS_precision);
  run.spec.checkpoint_every = run.spec.num_steps;
  run.spec.data.path = absl::GetFlag(FLAGS_tokens);
  run.seq_len = run.spec.seq_len;
  run.tokens = &tokens;
  run.order.resize(tokens.size() / static_cast<size_t>(run.seq_len));
  std::iota(run.order.begin(), run.order.end(), 0);
  const std::filesystem::path work = absl::GetFlag(FLAGS_workdir);
  run.checkpoint_dir = (work / "checkpoints").string();
  run.output_dir = (work / "lens").string();
  std::filesystem::create_directories(run.checkpoint_dir);
  run.base_model = "bench";
  const auto start = std::chrono::steady_clock::now();
  std::vector<double> step_ends;
  run.on_step = [&](const lensd::TrainingProgress&) {
    step_ends.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  run.on_checkpoint = [](int64_t, const std::string&) { return absl::OkStatus(); };
  auto result = lensd::engine::RunLensTraining(**model, nullptr, run);
  if (!result.ok()) return std::cerr << result.status() << "\n", 1;
  std::cout << nlohmann::json{{"step_ends", step_ends},
                              {"final_layer_losses", result->final_layer_losses}}
            << "\n";
  return 0;
}
