// The engine's process-level parts that the registry and main() use: the model factory, the
// torch runtime's settings, and the memory estimate of a model folder.
#include "core/engine/served/engine_factory.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>

#include "core/engine/model/checkpoint.h"
#include "core/engine/model/device.h"
#include "core/engine/models/model_loader.h"
#include "core/status_macros.h"

namespace lensd::engine {

void UsePassiveOpenMpWaits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: go on as we are
}

void ConfigureRuntime(int intra_op_threads) {
  if (intra_op_threads > 0) at::set_num_threads(intra_op_threads);
  // glibc serves blocks above its mmap threshold (at most 32 MiB when it adapts) with fresh
  // mappings and unmaps them on free, so every [tokens x vocab] logits tensor of a decode (51 MB
  // for 512 tokens of GPT-2) came back as new pages the kernel had to zero: a fifth of a bfloat16
  // decode's time. Keep blocks up to 1 GiB in the heap for reuse; ReleaseFreedMemory (after an
  // unload) still trims what is free.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

absl::StatusOr<int64_t> EstimateModelBytes(const std::string& dir,
                                           const ServedModelOptions& options) {
  LENSD_ASSIGN_OR_RETURN(const ModelConfig config, ReadModelConfig(dir));
  std::string name = options.dtype.empty() ? "float32" : options.dtype;
  if (name == "auto") name = config.torch_dtype.empty() ? "float32" : config.torch_dtype;
  LENSD_ASSIGN_OR_RETURN(const c10::ScalarType type, ParseDtype(name));
  LENSD_ASSIGN_OR_RETURN(const auto checkpoint, Checkpoint::Open(dir));
  return checkpoint->FloatElements() * static_cast<int64_t>(c10::elementSize(type));
}

namespace {

// A batch that a yield runs inside another (core/scheduler.h) starts as a batch on a fresh worker
// thread does: out of inference mode, gradients on. Without it, an attribution yielded to from
// inside a decode would run under the decode's InferenceMode and record no graph.
struct FreshThreadState {
  c10::InferenceMode not_inference{false};
  c10::AutoGradMode grad{true};
};

}  // namespace

std::shared_ptr<void> EnterFreshThreadState() { return std::make_shared<FreshThreadState>(); }

ModelFactory EngineModelFactory() {
  ModelFactory f;
  f.estimate_bytes = EstimateModelBytes;
  f.load = LoadServedModel;
  f.canonical_device = CanonicalDevice;
  f.release_memory = ReleaseFreedMemory;
  f.device_memory = ReadDeviceMemory;
  f.yield_scope = EnterFreshThreadState;
  return f;
}

}  // namespace lensd::engine
