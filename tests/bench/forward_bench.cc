// lensd-forward-bench: forward-pass throughput of the engine on a model folder. Prints one JSON
// line; tests/bench/forward_bench.py runs it beside transformers on the same checkpoint.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/engine/models/model_loader.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:<index>");
ABSL_FLAG(int, threads, 2, "intra-op CPU threads");
ABSL_FLAG(int, batch, 4, "prompts per forward");
ABSL_FLAG(int, seq, 128, "tokens per prompt");
ABSL_FLAG(int, iters, 10, "timed forwards (after 2 warm-up forwards)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Times engine forward passes: lensd-forward-bench --model DIR");
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  auto model = lensd::engine::LoadModel(absl::GetFlag(FLAGS_model),
                                        {absl::GetFlag(FLAGS_dtype), absl::GetFlag(FLAGS_device)});
  if (!model.ok()) return std::cerr << model.status() << "\n", 1;
  at::manual_seed(0);
  const int64_t batch = absl::GetFlag(FLAGS_batch), seq = absl::GetFlag(FLAGS_seq);
  const at::Tensor tokens = at::randint((*model)->config().vocab_size, {batch, seq}, at::kLong);
  const auto run = [&]() {
    auto out = (*model)->Forward({tokens});
    if (!out.ok()) std::cerr << out.status() << "\n", std::exit(1);
    return out->logits.sum().item<double>();  // forces completion (CUDA is asynchronous)
  };
  run();
  run();
  const int iters = absl::GetFlag(FLAGS_iters);
  const auto start = std::chrono::steady_clock::now();
  double checksum = 0;
  for (int i = 0; i < iters; ++i) checksum += run();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << nlohmann::json{{"tokens_per_s", static_cast<double>(batch * seq * iters) / seconds},
                              {"ms_per_forward", 1000 * seconds / iters},
                              {"checksum", checksum / iters}}
                   .dump()
            << "\n";
  return 0;
}
