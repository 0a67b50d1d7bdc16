#include "core/engine/model/causal_lm.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/interventions/interventions.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {

CausalLm::CausalLm(ModelConfig config, int64_t parameter_bytes, NormWeights final_norm,
                   at::Tensor unembed, at::Tensor unembed_bias)
    : config_(std::move(config)),
      parameter_bytes_(parameter_bytes),
      final_norm_(std::move(final_norm)),
      unembed_(std::move(unembed)),
      unembed_bias_(std::move(unembed_bias)) {}

at::Tensor CausalLm::FinalNorm(const at::Tensor& x, ForwardContext& ctx) const {
  return Norm(x, final_norm_, HookKind::kLnFinalScale, HookKind::kLnFinalNormalized, -1, ctx);
}

absl::Status CausalLm::Validate(const ForwardRequest& r, const KvCache* cache) const {
  const at::Tensor& tokens = r.tokens;
  if (!tokens.defined() || tokens.dim() != 2 || tokens.size(0) < 1 || tokens.size(1) < 1) {
    return absl::InvalidArgumentError("tokens must be a non-empty [batch, length] tensor");
  }
  if (tokens.scalar_type() != at::kLong && tokens.scalar_type() != at::kInt) {
    return absl::InvalidArgumentError("tokens must hold integer ids (int64 or int32)");
  }
  const int64_t low = tokens.min().item<int64_t>();
  const int64_t high = tokens.max().item<int64_t>();
  if (low < 0 || high >= config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", low < 0 ? low : high,
                                                   " out of range: model has token ids 0..",
                                                   config_.vocab_size - 1));
  }
  if (r.attention_mask.defined() && r.attention_mask.sizes() != tokens.sizes()) {
    return absl::InvalidArgumentError("attention_mask must have the shape of tokens");
  }
  if (r.positions.defined() &&
      (r.positions.sizes() != tokens.sizes() || r.positions.min().item<int64_t>() < 0)) {
    return absl::InvalidArgumentError("positions must have the shape of tokens and be >= 0");
  }
  if (config_.absolute_positions) {
    int64_t furthest =
        r.positions.defined() ? r.positions.max().item<int64_t>() : tokens.size(1) - 1;
    if (!r.positions.defined() && cache != nullptr && !cache->empty()) {
      furthest += cache->row_lengths().max().item<int64_t>();
    }
    if (furthest >= config_.max_positions) {
      return absl::InvalidArgumentError(absl::StrCat("position ", furthest,
                                                     " exceeds the model's context: positions 0..",
                                                     config_.max_positions - 1));
    }
  }
  if (r.stop_at_layer < -1 || r.stop_at_layer > config_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("stop_at_layer ", r.stop_at_layer,
                                                   " out of range: model has layers 0..",
                                                   config_.num_layers - 1));
  }
  if (r.start_layer != 0) {
    const int64_t end = r.stop_at_layer >= 0 ? r.stop_at_layer : config_.num_layers;
    if (r.start_layer < 0 || r.start_layer > end || cache != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "start_layer ", r.start_layer, " out of range 0..", end, " (and not with a KV cache)"));
    }
    if (!r.start_residual.defined() || r.start_residual.dim() != 3 ||
        r.start_residual.size(0) != tokens.size(0) || r.start_residual.size(1) != tokens.size(1) ||
        r.start_residual.size(2) != config_.d_model) {
      return absl::InvalidArgumentError(
          absl::StrCat("start_residual must be [batch, t, ", config_.d_model, "] like tokens"));
    }
  }
  if (cache != nullptr && !cache->empty()) {
    if (cache->row_lengths().size(0) != tokens.size(0)) {
      return absl::InvalidArgumentError(absl::StrCat("the KV cache holds ",
                                                     cache->row_lengths().size(0),
                                                     " rows but tokens has ", tokens.size(0)));
    }
    const int64_t needed = r.stop_at_layer >= 0 ? r.stop_at_layer : config_.num_layers;
    if (cache->complete_layers() < needed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the KV cache covers layers 0..", cache->complete_layers() - 1,
          " only (earlier calls exited early); this call needs layers 0..", needed - 1));
    }
  }
  return absl::OkStatus();
}

ForwardResult CausalLm::Run(const ForwardRequest& request, Hooks* hooks, KvCache* cache) const {
  const at::Tensor tokens = request.tokens.to(device(), at::kLong);
  const at::Tensor valid = request.attention_mask.defined()
                               ? request.attention_mask.to(device()).ne(0)
                               : at::ones(tokens.sizes(), tokens.options().dtype(at::kBool));
  at::Tensor positions;
  if (request.positions.defined()) {
    positions = request.positions.to(device(), at::kLong);
  } else {
    positions = valid.to(at::kLong).cumsum(1) - 1;
    if (cache != nullptr && !cache->empty())
      positions = positions + cache->row_lengths().unsqueeze(1);
    positions = positions.clamp_min(0);
  }
  if (hooks != nullptr) hooks->set_offset(cache != nullptr ? cache->length() : 0);
  if (cache != nullptr) cache->BeginStep(valid, positions);
  ForwardContext ctx(config_, hooks, cache, valid, positions, dtype());

  at::Tensor x =
      request.start_layer > 0 ? request.start_residual.to(device(), dtype()) : Embed(tokens, ctx);
  const int64_t layers = request.stop_at_layer >= 0 ? request.stop_at_layer : config_.num_layers;
  for (int64_t layer = request.start_layer; layer < layers; ++layer) {
    x = ctx.Hook(HookKind::kResidPre, layer, x);
    x = Block(layer, x, ctx);
    x = ctx.Hook(HookKind::kResidPost, layer, x);
  }
  if (cache != nullptr) cache->EndStep();

  ForwardResult result;
  result.residual = x;
  if (request.stop_at_layer >= 0 || request.logits == LogitsMode::kNone) return result;
  if (request.logits == LogitsMode::kLast) {
    const at::Tensor columns = at::arange(x.size(1), tokens.options()).expand_as(tokens);
    const at::Tensor last = at::where(valid, columns, at::zeros_like(columns)).amax(1);
    x = x.index({at::arange(x.size(0), tokens.options()), last}).unsqueeze(1);
  }
  at::Tensor normed = FinalNorm(x, ctx);
  normed = ctx.Hook(HookKind::kUnembedIn, -1, normed);
  result.logits = Unembed(normed);
  if (request.logits == LogitsMode::kLast) result.logits = result.logits.squeeze(1);
  return result;
}

absl::StatusOr<ForwardResult> CausalLm::Forward(const ForwardRequest& request, Hooks* hooks,
                                                KvCache* cache) const {
  return CatchTorch(absl::StrCat(config_.model_type, " forward"),
                    [&]() -> absl::StatusOr<ForwardResult> {
                      LENSD_RETURN_IF_ERROR(Validate(request, cache));
                      if (hooks != nullptr && hooks->needs_grad()) {
                        c10::AutoGradMode grad(true);
                        return Run(request, hooks, cache);
                      }
                      c10::InferenceMode inference;
                      return Run(request, hooks, cache);
                    });
}

absl::Status CausalLm::CheckResidual(const at::Tensor& residual) const {
  if (!residual.defined() || residual.dim() < 1 || residual.size(-1) != config_.d_model) {
    return absl::InvalidArgumentError(
        absl::StrCat("residual vectors must have d_model = ", config_.d_model, " entries"));
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> CausalLm::FinalNormAndUnembed(const at::Tensor& residual) const {
  return FinalNormAndUnembed(residual, unembed_);
}

absl::StatusOr<at::Tensor> CausalLm::FinalNormAndUnembed(const at::Tensor& residual,
                                                         const at::Tensor& unembed) const {
  return CatchTorch(
      absl::StrCat(config_.model_type, " unembed"), [&]() -> absl::StatusOr<at::Tensor> {
        LENSD_RETURN_IF_ERROR(CheckResidual(residual));
        ForwardContext ctx(config_, nullptr, nullptr, at::Tensor(), at::Tensor(), dtype());
        if (!unembed.defined() || unembed.sizes() != unembed_.sizes()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "the unembedding must be [", unembed_.size(0), ", ", unembed_.size(1), "]"));
        }
        return Unembed(FinalNorm(residual.to(device(), dtype()), ctx), unembed, true);
      });
}

absl::StatusOr<at::Tensor> CausalLm::FinalNormOnly(const at::Tensor& residual) const {
  return CatchTorch(
      absl::StrCat(config_.model_type, " final norm"), [&]() -> absl::StatusOr<at::Tensor> {
        LENSD_RETURN_IF_ERROR(CheckResidual(residual));
        ForwardContext ctx(config_, nullptr, nullptr, at::Tensor(), at::Tensor(), dtype());
        return FinalNorm(residual.to(device(), dtype()), ctx);
      });
}

absl::StatusOr<at::Tensor> CausalLm::FrozenFinalNormAndUnembed(
    const at::Tensor& residual, const at::Tensor& frozen_scale) const {
  return CatchTorch(
      absl::StrCat(config_.model_type, " unembed"), [&]() -> absl::StatusOr<at::Tensor> {
        LENSD_RETURN_IF_ERROR(CheckResidual(residual));
        Hooks hooks(config_.num_layers);
        hooks.Overwrite({HookKind::kLnFinalScale, -1}, frozen_scale);
        ForwardContext ctx(config_, &hooks, nullptr, at::Tensor(), at::Tensor(), dtype());
        return Unembed(FinalNorm(residual.to(device(), dtype()), ctx), false);
      });
}

at::Tensor CausalLm::SoftCap(const at::Tensor& logits) const {
  const double cap = config_.final_softcap;
  if (cap <= 0.0) return logits;
  return at::tanh(logits / cap) * cap;
}

absl::StatusOr<std::vector<at::Tensor>> CaptureHookPoints(const CausalLm& model,
                                                          const std::vector<HookPoint>& points,
                                                          const at::Tensor& tokens,
                                                          const Interventions* interventions) {
  c10::InferenceMode inference;
  Hooks hooks(model.config().num_layers);
  if (interventions != nullptr) interventions->Install(hooks);
  int64_t last_layer = -1;
  bool needs_final = false;
  for (const HookPoint& p : points) {
    hooks.Capture(p);
    last_layer = std::max(last_layer, p.layer);
    needs_final = needs_final ||
                  (p.is_global() && p.kind != HookKind::kEmbed && p.kind != HookKind::kPosEmbed);
  }
  ForwardRequest forward;
  forward.tokens = tokens;
  forward.logits = needs_final ? LogitsMode::kAll : LogitsMode::kNone;
  if (!needs_final) forward.stop_at_layer = last_layer + 1;
  LENSD_RETURN_IF_ERROR(model.Forward(forward, &hooks).status());
  std::vector<at::Tensor> out;
  out.reserve(points.size());
  for (const HookPoint& p : points) out.push_back(hooks.Captured(p));
  return out;
}

}  // namespace lensd::engine
