// The weights of a Hugging Face model folder: model.safetensors, or shards listed by
// model.safetensors.index.json. Tensors are read from memory-mapped files straight into the
// requested dtype and device, one at a time, and the mapped pages released after each copy, so
// that peak resident memory stays close to the size of the loaded weights.
// Thread-compatible: Open once, then Load from one thread at a time.
#ifndef LENSD_CORE_ENGINE_MODEL_CHECKPOINT_H_
#define LENSD_CORE_ENGINE_MODEL_CHECKPOINT_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/engine/formats/safetensors_file.h"

namespace lensd::engine {

class Checkpoint {
 public:
  // NOT_FOUND when the folder has neither model.safetensors nor model.safetensors.index.json;
  // INVALID_ARGUMENT (naming the file) when a file is malformed.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);
  // One safetensors file of any name (an SAE's sae_weights.safetensors). NOT_FOUND when absent.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenFile(const std::string& path);

  bool Has(const std::string& name) const { return index_.count(name) > 0; }
  // The stored shape of a tensor; empty optional when it is missing.
  std::optional<std::vector<int64_t>> Shape(const std::string& name) const;
  // The stored floating-point dtype of a tensor; empty when missing or not floating point.
  std::optional<at::ScalarType> StoredDtype(const std::string& name) const;
  // Names of every tensor, sorted.
  std::vector<std::string> Names() const;
  // Copies a floating-point tensor into `destination` (any dtype and device; may be a view such
  // as a transpose or a slice of a stacked tensor), whose shape must be the tensor's shape in the
  // file. INVALID_ARGUMENT names the file and tensor when it is missing, not floating point, or of
  // another shape. Copies in chunks, releasing mapped pages as it goes.
  absl::Status LoadInto(const std::string& name, const at::Tensor& destination) const;
  // Elements of all floating-point tensors (what a load converts and keeps, before tying).
  int64_t FloatElements() const;
  // The file(s) this checkpoint reads, for messages.
  std::string Describe() const;

 private:
  Checkpoint() = default;

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> index_;  // tensor name -> position in files_
};

// Loads the tensors of one model: tries each name with the given prefixes (old GPT-2 files lack
// "transformer."), converts to the model's dtype and device, and counts the bytes loaded.
class WeightLoader {
 public:
  WeightLoader(const Checkpoint* checkpoint, at::ScalarType dtype, at::Device device,
               std::vector<std::string> prefixes)
      : checkpoint_(checkpoint), dtype_(dtype), device_(device), prefixes_(std::move(prefixes)) {}

  // The tensor `name` of the given shape.
  absl::StatusOr<at::Tensor> Get(const std::string& name, std::vector<int64_t> shape);
  // A 2-D tensor stored as [in, out] (GPT-2's Conv1D) returned as [out, in], without a temporary.
  absl::StatusOr<at::Tensor> GetTransposed(const std::string& name, int64_t in, int64_t out);
  // Tensors with the same trailing shape stacked along dim 0 (fused projections).
  absl::StatusOr<at::Tensor> GetStacked(const std::vector<std::string>& names,
                                        const std::vector<std::vector<int64_t>>& shapes);
  bool Has(const std::string& name) const;
  int64_t bytes_loaded() const { return bytes_loaded_; }

 private:
  std::string Resolve(const std::string& name) const;
  absl::Status Fill(const std::string& name, const at::Tensor& destination);

  const Checkpoint* checkpoint_;
  at::ScalarType dtype_;
  at::Device device_;
  std::vector<std::string> prefixes_;
  int64_t bytes_loaded_ = 0;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_CHECKPOINT_H_
