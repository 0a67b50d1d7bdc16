// Sparse autoencoders attached to a hook point (attribution.md §3): the SAELens folder format
// (cfg.json + sae_weights.safetensors; standard, gated, jumprelu and topk; flat pre-6.0 and nested
// 6.x cfg keys) and the EleutherAI sparsify format (cfg.json + sae.safetensors; topk, groupmax,
// optional skip connection). Encode and Decode follow the libraries' own code:
//   x <- N_in(x); x' = x - b_dec if apply_b_dec_to_input
//   standard  f = relu(x' W_enc + b_enc)
//   jumprelu  f = relu(h) * [h > threshold],                  h = x' W_enc + b_enc
//   gated     f = [x' W_enc + b_gate > 0] * relu((x' W_enc) * exp(r_mag) + b_mag)
//   topk      k largest of h (times ||W_dec[i]|| with rescale_acts_by_decoder_norm), relu'd
//   decode    x^ = N_out((f / ||W_dec[i]|| if rescaled) W_dec + b_dec (+ x W_skip^T))
// N_in/N_out: constant_norm_rescale (c = sqrt(d_in)/||x||), layer_norm (mean, unbiased std + 1e-5);
// expected_average_only_in's scalar is folded into W_enc, W_dec and b_dec at load.
// An Sae is immutable after Load and thread-safe; Encode/Decode may throw c10::Error, so callers
// run them inside CatchTorch.
#ifndef LENSD_CORE_ENGINE_SAE_SAE_H_
#define LENSD_CORE_ENGINE_SAE_SAE_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace lensd::engine {

enum class SaeArchitecture : uint8_t { kStandard, kGated, kJumpRelu, kTopK };
enum class SaeNormalization : uint8_t { kNone, kConstantNormRescale, kLayerNorm };

struct SaeConfig {
  std::string format;  // "saelens" or "sparsify"
  SaeArchitecture architecture = SaeArchitecture::kStandard;
  int64_t d_in = 0;
  int64_t d_sae = 0;
  std::string hook_name;  // as written in cfg.json (a TransformerLens or sparsify name); may be ""
  bool apply_b_dec_to_input = true;
  SaeNormalization normalization = SaeNormalization::kNone;
  double norm_scaling_factor = 0;  // expected_average_only_in: folded at load; 0 when none
  int64_t k = 0;                   // topk
  bool rescale_acts_by_decoder_norm = false;
  bool group_max = false;        // sparsify "groupmax": the max of each of k equal groups
  bool skip_connection = false;  // sparsify W_skip
  bool hook_z = false;           // input is [..., heads, d_head], flattened
  bool prepend_bos = true;
  bool exclude_special_tokens = false;
  std::string dtype = "float32";  // the dtype cfg.json declares (the stored one for sparsify)
  std::string model_name;
  std::string neuronpedia_id;
};

const char* ArchitectureName(SaeArchitecture architecture);
const char* NormalizationName(SaeNormalization normalization);

// Reads <dir>/cfg.json: SAELens when the folder holds sae_weights.safetensors, sparsify when it
// holds sae.safetensors. NOT_FOUND when there is neither; INVALID_ARGUMENT naming the file and
// field for an unknown architecture, activation or normalisation, or a missing d_in/d_sae.
absl::StatusOr<SaeConfig> ReadSaeConfig(const std::string& dir);

// The features of a batch of inputs and the per-token normalisation Decode needs to undo.
struct SaeCode {
  at::Tensor features;    // [..., d_sae] in the SAE's dtype; zero where inactive
  at::Tensor norm_scale;  // [..., 1]: multiplies the decoder output; undefined for no norm
  at::Tensor norm_shift;  // [..., 1]: added after (layer_norm's mean); undefined otherwise
  at::Tensor input;       // [..., d_in] the input in the SAE's dtype (for the skip connection)
};

class Sae {
 public:
  // Loads the folder straight into `dtype` (nullopt: the cfg's) on `device`. Errors as
  // ReadSaeConfig, plus INVALID_ARGUMENT naming the weights file and tensor that is missing or
  // of the wrong shape.
  static absl::StatusOr<std::unique_ptr<Sae>> Load(const std::string& dir,
                                                   std::optional<at::ScalarType> dtype,
                                                   at::Device device);

  const SaeConfig& config() const { return config_; }
  int64_t bytes() const { return bytes_; }
  at::ScalarType dtype() const { return W_dec_.scalar_type(); }
  const at::Tensor& W_dec() const { return W_dec_; }  // [d_sae, d_in]
  const at::Tensor& b_dec() const { return b_dec_; }  // [d_in]

  // x [..., d_in] (hook_z inputs flattened by the caller), any float dtype.
  SaeCode Encode(const at::Tensor& x) const;
  // The reconstruction [..., d_in] of `features` with the normalisation of `code`.
  at::Tensor Decode(const at::Tensor& features, const SaeCode& code) const;
  at::Tensor Decode(const SaeCode& code) const { return Decode(code.features, code); }
  // d m / d f [..., d_sae] given d m / d x^ [..., d_in] (the gradient at the reconstruction;
  // attribution.md §1.3): (G W_dec^T) times the decoder-side scale.
  at::Tensor FeatureGrad(const at::Tensor& grad, const SaeCode& code) const;

 private:
  Sae() = default;

  SaeConfig config_;
  int64_t bytes_ = 0;
  at::Tensor W_enc_;      // [d_in, d_sae]
  at::Tensor b_enc_;      // [d_sae] (gated: b_gate)
  at::Tensor b_mag_;      // gated
  at::Tensor r_mag_exp_;  // gated: exp(r_mag)
  at::Tensor threshold_;  // jumprelu
  at::Tensor W_dec_;      // [d_sae, d_in]
  at::Tensor b_dec_;      // [d_in]
  at::Tensor W_skip_;     // [d_in, d_in] (sparsify)
  at::Tensor dec_norm_;   // [d_sae]: ||W_dec[i]|| for rescale_acts_by_decoder_norm
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_SAE_SAE_H_
