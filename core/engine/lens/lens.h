// Lenses decode residual-stream vectors into vocabulary logits with the model's own final norm
// and unembedding (tuned-lens.md §1):
//   LogitLens:  logits = unembed(norm_f(h))
//   TunedLens:  logits = unembed(norm_f(h + W_l h + b_l)), one affine translator per layer
//               l = 0..L-1 (h_l is the stream entering block l); all-zero translators equal the
//               logit lens exactly.
// Lenses are immutable after creation and thread-safe; share them as shared_ptr<const Lens>.
#ifndef LENSD_CORE_ENGINE_LENS_LENS_H_
#define LENSD_CORE_ENGINE_LENS_LENS_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "core/engine/model/causal_lm.h"

namespace lensd::engine {

class Lens {
 public:
  virtual ~Lens() = default;

  const std::string& name() const { return name_; }
  virtual const char* kind() const = 0;  // "logit" or "tuned"

  // Logits [..., vocab] in the model's dtype for residual vectors h [..., d_model] read at layer
  // `layer` (0..L-1). INVALID_ARGUMENT for a layer out of range or vectors of the wrong size.
  absl::StatusOr<at::Tensor> Logits(const CausalLm& model, const at::Tensor& h,
                                    int64_t layer) const;

  // The translated vectors (the identity for the logit lens). Precondition: layer in range; may
  // throw c10::Error, so callers run it inside CatchTorch.
  virtual at::Tensor TransformHidden(const at::Tensor& h, int64_t layer) const = 0;

 protected:
  explicit Lens(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
};

class LogitLens : public Lens {
 public:
  LogitLens() : Lens("logit") {}
  const char* kind() const override { return "logit"; }
  at::Tensor TransformHidden(const at::Tensor& h, int64_t layer) const override { return h; }
};

// config.json of a tuned-lens folder.
struct TunedLensConfig {
  std::string base_model;  // base_model_name_or_path
  int64_t d_model = 0;
  int64_t num_layers = 0;  // num_hidden_layers
  bool bias = true;
  std::optional<std::string> unembed_hash;  // advisory, as in tuned-lens
};

class TunedLens : public Lens {
 public:
  // Reads a tuned-lens folder as published: config.json plus params.pt (a torch.save state dict
  // with keys "{i}.weight" [d, d] and "{i}.bias" [d]) or params.safetensors with the same keys,
  // in float32, float16 or bfloat16, converted to the model's dtype and device. NOT_FOUND when the
  // folder lacks the files; INVALID_ARGUMENT naming the file and key for a malformed file, and
  // naming both numbers when d_model or the layer count differs from the model's.
  static absl::StatusOr<std::unique_ptr<TunedLens>> Load(const std::string& dir,
                                                         const CausalLm& model, std::string name);

  // From translator parameters: weights [L, d, d] ([out, in] per layer), biases [L, d].
  static absl::StatusOr<std::unique_ptr<TunedLens>> FromTranslators(std::string name,
                                                                    TunedLensConfig config,
                                                                    at::Tensor weights,
                                                                    at::Tensor biases);

  const char* kind() const override { return "tuned"; }
  const TunedLensConfig& config() const { return config_; }
  const at::Tensor& weights() const { return weights_; }
  const at::Tensor& biases() const { return biases_; }
  at::Tensor TransformHidden(const at::Tensor& h, int64_t layer) const override;

 private:
  TunedLens(std::string name, TunedLensConfig config, at::Tensor weights, at::Tensor biases)
      : Lens(std::move(name)),
        config_(std::move(config)),
        weights_(std::move(weights)),
        biases_(std::move(biases)) {}

  TunedLensConfig config_;
  at::Tensor weights_;  // [L, d, d]
  at::Tensor biases_;   // [L, d]
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_LENS_H_
