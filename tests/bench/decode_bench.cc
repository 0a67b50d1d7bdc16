// lensd-decode-bench: all-layer decoding throughput of the engine (every lens row plus the
// output row, top-5 tokens, entropy, forward KL, cross-entropy, max probability). Prints one JSON
// line; tests/bench/decode_bench.py runs it beside tuned-lens on the same checkpoint and lens.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/engine/lens/decode.h"
#include "core/engine/lens/lens.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/served/engine_factory.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder");
ABSL_FLAG(std::string, lens, "", "tuned-lens folder (empty: the logit lens)");
ABSL_FLAG(int, threads, 2, "intra-op CPU threads");
ABSL_FLAG(int, prompts, 8, "prompts decoded");
ABSL_FLAG(int, batch, 4, "prompts per Decode call");
ABSL_FLAG(int, seq, 128, "tokens per prompt");
ABSL_FLAG(std::string, dtype, "float32", "dtype of the weights: float32 | bfloat16 | float16");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda:<index>");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times all-layer decoding: lensd-decode-bench --model DIR --lens DIR");
  lensd::engine::UsePassiveOpenMpWaits(argv);  // as lensd runs
  absl::ParseCommandLine(argc, argv);
  lensd::engine::ConfigureRuntime(absl::GetFlag(FLAGS_threads));
  auto model = lensd::engine::LoadModel(absl::GetFlag(FLAGS_model),
                                        {absl::GetFlag(FLAGS_dtype), absl::GetFlag(FLAGS_device)});
  if (!model.ok()) return std::cerr << model.status() << "\n", 1;
  std::unique_ptr<lensd::engine::Lens> lens = std::make_unique<lensd::engine::LogitLens>();
  if (!absl::GetFlag(FLAGS_lens).empty()) {
    auto tuned = lensd::engine::TunedLens::Load(absl::GetFlag(FLAGS_lens), **model, "tuned");
    if (!tuned.ok()) return std::cerr << tuned.status() << "\n", 1;
    lens = *std::move(tuned);
  }
  at::manual_seed(0);
  const int prompts = absl::GetFlag(FLAGS_prompts), batch = absl::GetFlag(FLAGS_batch);
  const int64_t seq = absl::GetFlag(FLAGS_seq);
  const at::Tensor tokens = at::randint((*model)->config().vocab_size, {prompts, seq}, at::kLong);
  const auto decode = [&](const at::Tensor& chunk) {
    lensd::engine::DecodeRequest r;
    r.tokens = chunk;
    r.statistics = lensd::engine::kEntropy | lensd::engine::kForwardKl |
                   lensd::engine::kCrossEntropy | lensd::engine::kMaxProbability;
    auto out = lensd::engine::Decode(**model, *lens, r);
    if (!out.ok()) std::cerr << out.status() << "\n", std::exit(1);
    return out->entropy.sum().item<double>() + out->top_ids.sum().item<double>();
  };
  decode(tokens.narrow(0, 0, 1));  // warm-up
  const auto start = std::chrono::steady_clock::now();
  double checksum = 0;
  for (int first = 0; first < prompts; first += batch) {
    checksum += decode(tokens.narrow(0, first, std::min(batch, prompts - first)));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << nlohmann::json{{"prompts_per_s", prompts / seconds},
                              {"tokens_per_s", static_cast<double>(prompts * seq) / seconds},
                              {"checksum", checksum}}
                   .dump()
            << "\n";
  return 0;
}
