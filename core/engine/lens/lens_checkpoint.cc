#include "core/engine/lens/lens_checkpoint.h"

#include <ATen/ATen.h>

#include <cstring>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/durable_file.h"
#include "core/engine/formats/safetensors_file.h"
#include "core/engine/formats/safetensors_writer.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

constexpr char kFormat[] = "lensd-lens-training-1";

void AddAll(const std::string& prefix, const std::vector<at::Tensor>& tensors,
            std::vector<TensorToWrite>* out) {
  for (size_t l = 0; l < tensors.size(); ++l) {
    const at::Tensor t = tensors[l].to(at::kCPU, at::kFloat).contiguous();
    out->push_back({absl::StrCat(prefix, ".", l), FileDtype::kF32, t.sizes().vec(),
                    std::string(static_cast<const char*>(t.data_ptr()),
                                static_cast<size_t>(t.numel()) * sizeof(float))});
  }
}

}  // namespace

absl::Status SaveTrainingCheckpoint(const TrainingCheckpoint& c, const std::string& path) {
  std::vector<TensorToWrite> tensors;
  LENSD_RETURN_IF_ERROR(CatchTorch("checkpoint", [&]() -> absl::Status {
    AddAll("weight", c.state.weights, &tensors);
    AddAll("bias", c.state.biases, &tensors);
    AddAll("weight_momentum", c.state.weight_momentum, &tensors);
    AddAll("bias_momentum", c.state.bias_momentum, &tensors);
    return absl::OkStatus();
  }));
  const std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"layers", std::to_string(c.state.weights.size())},
      {"step", std::to_string(c.state.step)},
      {"next_sequence", std::to_string(c.next_sequence)},
      {"elapsed_us", std::to_string(c.elapsed_us)}};
  LENSD_ASSIGN_OR_RETURN(const std::string bytes, SafetensorsBytes(tensors, metadata));
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<TrainingCheckpoint> LoadTrainingCheckpoint(const std::string& path) {
  LENSD_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  const auto& meta = file->header().metadata;
  const auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a lensd training checkpoint (", what, ")"));
  };
  const auto number = [&](const char* key, int64_t* out) {
    const auto it = meta.find(key);
    return it != meta.end() && absl::SimpleAtoi(it->second, out) && *out >= 0;
  };
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kFormat) return bad("format");
  TrainingCheckpoint c;
  int64_t layers = 0;
  if (!number("layers", &layers) || !number("step", &c.state.step) ||
      !number("next_sequence", &c.next_sequence)) {
    return bad("counters");
  }
  if (meta.count("elapsed_us") > 0 && !number("elapsed_us", &c.elapsed_us)) {
    return bad("elapsed_us");  // absent in checkpoints of earlier lensd versions: 0
  }
  const auto& entries = file->header().tensors;
  const auto read = [&](const std::string& prefix,
                        std::vector<at::Tensor>* out) -> absl::StatusOr<bool> {
    for (int64_t l = 0; l < layers; ++l) {
      const auto it = entries.find(absl::StrCat(prefix, ".", l));
      if (it == entries.end()) {
        if (l == 0) return false;  // momentum is absent before the first step
        return bad(absl::StrCat(prefix, ".", l, " missing"));
      }
      if (it->second.dtype != FileDtype::kF32) return bad(absl::StrCat(prefix, " dtype"));
      const absl::string_view bytes = file->Bytes(it->second);
      const std::vector<int64_t>& shape = it->second.shape;
      LENSD_ASSIGN_OR_RETURN(at::Tensor t, CatchTorch(path, [&]() -> absl::StatusOr<at::Tensor> {
                               at::Tensor t = at::empty(shape, at::kFloat);
                               std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
                               return t;
                             }));
      out->push_back(std::move(t));
    }
    return true;
  };
  LENSD_ASSIGN_OR_RETURN(const bool has_weights, read("weight", &c.state.weights));
  LENSD_ASSIGN_OR_RETURN(const bool has_biases, read("bias", &c.state.biases));
  if (!has_weights || !has_biases) return bad("translators missing");
  LENSD_ASSIGN_OR_RETURN(const bool has_weight_momentum,
                         read("weight_momentum", &c.state.weight_momentum));
  LENSD_ASSIGN_OR_RETURN(const bool has_bias_momentum,
                         read("bias_momentum", &c.state.bias_momentum));
  (void)has_weight_momentum;
  (void)has_bias_momentum;
  return c;
}

}  // namespace lensd::engine
