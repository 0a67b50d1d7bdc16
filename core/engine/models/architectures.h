// The registry of architectures, keyed by config.json "model_type". Adding an architecture is one
// new file defining its Architecture and one line in architectures.cc.
#ifndef LENSD_CORE_ENGINE_MODELS_ARCHITECTURES_H_
#define LENSD_CORE_ENGINE_MODELS_ARCHITECTURES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/model_config.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::engine {

struct Architecture {
  std::string model_type;
  // Prefixes tried before each tensor name (checkpoints differ, e.g. "transformer." or none).
  std::vector<std::string> weight_prefixes;
  // Reads config.json; INVALID_ARGUMENT names the missing or bad field.
  absl::StatusOr<ModelConfig> (*parse_config)(const nlohmann::json& config);
  // Builds the model from the checkpoint's tensors in the loader's dtype and device.
  absl::StatusOr<std::unique_ptr<CausalLm>> (*load)(const ModelConfig& config,
                                                    WeightLoader* weights);
};

// One per architecture file.
Architecture Gpt2Architecture();
Architecture GptNeoxArchitecture();
Architecture LlamaArchitecture();
Architecture MistralArchitecture();
Architecture Qwen2Architecture();
Architecture Qwen3Architecture();
Architecture GemmaArchitecture();
Architecture Gemma2Architecture();
Architecture Gemma3Architecture();
Architecture Olmo2Architecture();
Architecture Phi3Architecture();
Architecture OptArchitecture();
Architecture GptNeoArchitecture();
Architecture GptjArchitecture();
Architecture BloomArchitecture();
Architecture MixtralArchitecture();
Architecture OlmoeArchitecture();

// nullptr when model_type is not supported.
const Architecture* FindArchitecture(absl::string_view model_type);
// "gemma, gpt2, ..." for messages.
std::string SupportedModelTypes();

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODELS_ARCHITECTURES_H_
