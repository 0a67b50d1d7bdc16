// lensd-patching-bench: an activation-patching sweep in the engine on a model folder (what the
// ActivationPatching RPC runs). Prints one JSON line with the time and the grid;
// tests/bench/patching_bench.py runs it beside transformer_lens.patching on the same weights.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/engine/attribution/activation_patching.h"
#include "core/engine/models/model_loader.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder");
ABSL_FLAG(int, threads, 2, "intra-op CPU threads");
ABSL_FLAG(std::string, clean, "", "clean token ids, a JSON list");
ABSL_FLAG(std::string, corrupted, "", "corrupted token ids, a JSON list (the same length)");
ABSL_FLAG(int64_t, target, 0, "metric: logit(target) - logit(foil) at the last position");
ABSL_FLAG(int64_t, foil, 1, "see --target");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times a resid_pre patching sweep (every layer x every position): lensd-patching-bench "
      "--model DIR --clean '[...]' --corrupted '[...]'");
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  auto model = lensd::engine::LoadModel(absl::GetFlag(FLAGS_model), {"float32", "cpu"});
  if (!model.ok()) return std::cerr << model.status() << "\n", 1;
  lensd::ActivationPatchingSpec spec;
  spec.clean = nlohmann::json::parse(absl::GetFlag(FLAGS_clean)).get<std::vector<int64_t>>();
  spec.corrupted =
      nlohmann::json::parse(absl::GetFlag(FLAGS_corrupted)).get<std::vector<int64_t>>();
  spec.metric.kind = lensd::MetricKind::kLogitDiff;
  spec.metric.target = absl::GetFlag(FLAGS_target);
  spec.metric.foil = absl::GetFlag(FLAGS_foil);
  spec.sweeps = {{lensd::PatchingSite::kResidPre, false}};
  const auto start = std::chrono::steady_clock::now();
  auto out = lensd::engine::PatchActivations(**model, spec, nullptr);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!out.ok()) return std::cerr << out.status() << "\n", 1;
  std::cout << nlohmann::json{{"seconds", seconds},
                              {"patched_runs", out->patched_runs},
                              {"forward_passes", out->forward_passes},
                              {"shape", out->grids[0].shape},
                              {"grid", out->grids[0].metric}}
                   .dump()
            << "\n";
  return 0;
}
