#include "core/engine/models/architectures.h"

#include <algorithm>

#include "absl/strings/str_join.h"

namespace lensd::engine {
namespace {

const std::vector<Architecture>& Registry() {
  static const auto* registry = new std::vector<Architecture>{
      Gpt2Architecture(),   GptNeoxArchitecture(), LlamaArchitecture(), MistralArchitecture(),
      Qwen2Architecture(),  Qwen3Architecture(),   GemmaArchitecture(), OptArchitecture(),
      GptNeoArchitecture(), GptjArchitecture(),    BloomArchitecture(), Gemma2Architecture(),
      Gemma3Architecture(), Olmo2Architecture(),   Phi3Architecture(),  MixtralArchitecture(),
      OlmoeArchitecture(),
  };
  return *registry;
}

}  // namespace

const Architecture* FindArchitecture(absl::string_view model_type) {
  for (const Architecture& a : Registry()) {
    if (a.model_type == model_type) return &a;
  }
  return nullptr;
}

std::string SupportedModelTypes() {
  std::vector<std::string> names;
  for (const Architecture& a : Registry()) names.push_back(a.model_type);
  std::sort(names.begin(), names.end());
  return absl::StrJoin(names, ", ");
}

}  // namespace lensd::engine
