#include "core/engine/sae/sae.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/device.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

namespace fs = std::filesystem;

// Reads the SAE's tensors straight into their final dtype and device.
class SaeWeights {
 public:
  SaeWeights(const Checkpoint& file, at::ScalarType dtype, at::Device device)
      : file_(file), options_(at::TensorOptions().dtype(dtype).device(device)) {}

  absl::StatusOr<at::Tensor> Get(const std::string& name, const std::vector<int64_t>& shape) {
    at::Tensor out = at::empty(shape, options_);
    LENSD_RETURN_IF_ERROR(file_.LoadInto(name, out));
    bytes_ += static_cast<int64_t>(out.nbytes());
    return out;
  }
  // A tensor stored as [rows, cols] returned as [cols, rows] (sparsify's encoder.weight).
  absl::StatusOr<at::Tensor> GetTransposed(const std::string& name, int64_t rows, int64_t cols) {
    at::Tensor out = at::empty({cols, rows}, options_);
    LENSD_RETURN_IF_ERROR(file_.LoadInto(name, out.t()));
    bytes_ += static_cast<int64_t>(out.nbytes());
    return out;
  }
  int64_t bytes() const { return bytes_; }

 private:
  const Checkpoint& file_;
  at::TensorOptions options_;
  int64_t bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Sae>> Sae::Load(const std::string& dir,
                                               std::optional<at::ScalarType> dtype,
                                               at::Device device) {
  LENSD_ASSIGN_OR_RETURN(SaeConfig config, ReadSaeConfig(dir));
  const bool saelens = config.format == "saelens";
  const std::string path =
      (fs::path(dir) / (saelens ? "sae_weights.safetensors" : "sae.safetensors")).string();
  LENSD_ASSIGN_OR_RETURN(const std::unique_ptr<Checkpoint> file, Checkpoint::OpenFile(path));
  if (!dtype) {
    if (saelens) {
      auto parsed = ParseDtype(config.dtype);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(dir, "/cfg.json: dtype \"", config.dtype,
                                                       "\" is not float32, float16 or bfloat16"));
      }
      dtype = *parsed;
    } else {
      // sparsify: the dtype of the first stored tensor, as its loader does.
      const std::vector<std::string> names = file->Names();
      dtype = names.empty() ? std::nullopt : file->StoredDtype(names.front());
      if (!dtype) dtype = at::kFloat;
    }
  }
  std::unique_ptr<Sae> sae(new Sae());
  sae->config_ = config;
  sae->config_.dtype = DtypeName(*dtype);
  const int64_t d_in = config.d_in;
  const int64_t d_sae = config.d_sae;
  LENSD_RETURN_IF_ERROR(CatchTorch(path, [&]() -> absl::Status {
    c10::NoGradGuard no_grad;  // plain tensors: attribution runs autograd through the decoder
    SaeWeights w(*file, *dtype, device);
    if (saelens) {
      LENSD_ASSIGN_OR_RETURN(sae->W_enc_, w.Get("W_enc", {d_in, d_sae}));
      if (config.architecture == SaeArchitecture::kGated) {
        LENSD_ASSIGN_OR_RETURN(sae->b_enc_, w.Get("b_gate", {d_sae}));
        LENSD_ASSIGN_OR_RETURN(sae->b_mag_, w.Get("b_mag", {d_sae}));
        LENSD_ASSIGN_OR_RETURN(const at::Tensor r_mag, w.Get("r_mag", {d_sae}));
        sae->r_mag_exp_ = r_mag.exp();
      } else {
        LENSD_ASSIGN_OR_RETURN(sae->b_enc_, w.Get("b_enc", {d_sae}));
      }
      if (config.architecture == SaeArchitecture::kJumpRelu) {
        if (file->Has("threshold")) {
          LENSD_ASSIGN_OR_RETURN(sae->threshold_, w.Get("threshold", {d_sae}));
        } else if (file->Has("log_threshold")) {
          LENSD_ASSIGN_OR_RETURN(const at::Tensor log_t, w.Get("log_threshold", {d_sae}));
          sae->threshold_ = log_t.exp();
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": a jumprelu SAE needs \"threshold\" (or \"log_threshold\")"));
        }
      }
    } else {
      LENSD_ASSIGN_OR_RETURN(sae->W_enc_, w.GetTransposed("encoder.weight", d_sae, d_in));
      LENSD_ASSIGN_OR_RETURN(sae->b_enc_, w.Get("encoder.bias", {d_sae}));
      if (config.skip_connection) {
        LENSD_ASSIGN_OR_RETURN(sae->W_skip_, w.Get("W_skip", {d_in, d_in}));
      }
    }
    LENSD_ASSIGN_OR_RETURN(sae->W_dec_, w.Get("W_dec", {d_sae, d_in}));
    LENSD_ASSIGN_OR_RETURN(sae->b_dec_, w.Get("b_dec", {d_in}));
    if (saelens && file->Has("scaling_factor")) {
      // Pre-6.0 fine-tuning scale: multiplies the features before decoding; fold it into W_dec.
      LENSD_ASSIGN_OR_RETURN(const at::Tensor s, w.Get("scaling_factor", {d_sae}));
      sae->W_dec_.mul_(s.unsqueeze(1));
    }
    if (config.norm_scaling_factor != 0) {  // expected_average_only_in, folded (SAELens #354)
      sae->W_enc_.mul_(config.norm_scaling_factor);
      sae->W_dec_.div_(config.norm_scaling_factor);
      sae->b_dec_.div_(config.norm_scaling_factor);
    }
    if (config.rescale_acts_by_decoder_norm) sae->dec_norm_ = sae->W_dec_.norm(2, {1});
    sae->bytes_ = w.bytes();
    return absl::OkStatus();
  }));
  return sae;
}

SaeCode Sae::Encode(const at::Tensor& input) const {
  SaeCode code;
  at::Tensor x = input.to(W_enc_.scalar_type());
  code.input = x;
  if (config_.normalization == SaeNormalization::kConstantNormRescale) {
    const at::Tensor c = std::sqrt(static_cast<double>(config_.d_in)) / x.norm(2, {-1}, true);
    x = x * c;
    code.norm_scale = c.reciprocal();
  } else if (config_.normalization == SaeNormalization::kLayerNorm) {
    const at::Tensor mu = x.mean(-1, true);
    x = x - mu;
    const at::Tensor std = x.std(-1, /*unbiased=*/true, /*keepdim=*/true);
    x = x / (std + 1e-5);
    code.norm_scale = std;
    code.norm_shift = mu;
  }
  if (config_.apply_b_dec_to_input) x = x - b_dec_;
  at::Tensor h = at::matmul(x, W_enc_);
  switch (config_.architecture) {
    case SaeArchitecture::kStandard:
      code.features = at::relu(h + b_enc_);
      break;
    case SaeArchitecture::kJumpRelu:
      h = h + b_enc_;
      code.features = at::relu(h) * h.gt(threshold_).to(h.scalar_type());
      break;
    case SaeArchitecture::kGated: {
      const at::Tensor gate = (h + b_enc_).gt(0).to(h.scalar_type());
      code.features = gate * at::relu(h * r_mag_exp_ + b_mag_);
      break;
    }
    case SaeArchitecture::kTopK: {
      h = h + b_enc_;
      if (config_.format == "sparsify") h = at::relu(h);  // sparsify relus before selecting
      if (config_.rescale_acts_by_decoder_norm) h = h * dec_norm_;
      at::Tensor values;
      at::Tensor indices;
      if (config_.group_max) {
        std::vector<int64_t> grouped = h.sizes().vec();
        grouped.back() = config_.k;
        grouped.push_back(config_.d_sae / config_.k);
        std::tie(values, indices) = h.reshape(grouped).max(-1);
        indices =
            indices + at::arange(0, config_.d_sae, config_.d_sae / config_.k, indices.options());
      } else {
        std::tie(values, indices) = h.topk(config_.k, -1, /*largest=*/true, /*sorted=*/false);
      }
      code.features = at::zeros_like(h).scatter(-1, indices, at::relu(values));
      break;
    }
  }
  return code;
}

at::Tensor Sae::Decode(const at::Tensor& features, const SaeCode& code) const {
  at::Tensor f = features.to(W_dec_.scalar_type());
  if (config_.rescale_acts_by_decoder_norm) f = f / dec_norm_;
  at::Tensor y = at::matmul(f, W_dec_) + b_dec_;
  if (W_skip_.defined()) y = y + at::matmul(code.input, W_skip_.t());
  if (code.norm_scale.defined()) y = y * code.norm_scale;
  if (code.norm_shift.defined()) y = y + code.norm_shift;
  return y;
}

at::Tensor Sae::FeatureGrad(const at::Tensor& grad, const SaeCode& code) const {
  at::Tensor g = grad.to(W_dec_.scalar_type());
  if (code.norm_scale.defined()) g = g * code.norm_scale;
  g = at::matmul(g, W_dec_.t());
  if (config_.rescale_acts_by_decoder_norm) g = g / dec_norm_;
  return g;
}

}  // namespace lensd::engine
