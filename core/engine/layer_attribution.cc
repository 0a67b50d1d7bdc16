// Direct logit attribution and the per-layer logit lens at one position (attribution.md §4).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/attribution.h"
#include "core/engine/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

absl::Status Validate(const LayerAttributionSpec& spec, int64_t vocab) {
  const auto t = static_cast<int64_t>(spec.tokens.size());
  if (t == 0) return absl::InvalidArgumentError("input: no tokens");
  if (spec.position < -1 || spec.position >= t) {
    return absl::InvalidArgumentError(
        absl::StrCat("position: ", spec.position, " out of range 0..", t - 1, " (-1: the last)"));
  }
  for (const auto& [value, field] : {std::pair{spec.target, "target"}, {spec.foil, "foil"}}) {
    if (value < -1 || value >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": token id ", value, " out of range 0..", vocab - 1));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LayerAttributionOutput> AttributeLayers(const CausalLm& model,
                                                       const LayerAttributionSpec& spec) {
  const ModelConfig& config = model.config();
  LENSD_RETURN_IF_ERROR(Validate(spec, config.vocab_size));
  return CatchTorch("layer attribution", [&]() -> absl::StatusOr<LayerAttributionOutput> {
    c10::InferenceMode inference;
    const int64_t layers = config.num_layers;
    LayerAttributionOutput out;
    out.position = spec.position < 0 ? static_cast<int64_t>(spec.tokens.size()) - 1 : spec.position;
    Hooks hooks(layers);
    std::vector<std::pair<std::string, HookPoint>> parts;
    if (spec.mode == LayerAttributionMode::kDirectLogit) {
      parts.emplace_back("embed", HookPoint{HookKind::kEmbed, -1});
      if (config.absolute_positions)
        parts.emplace_back("pos_embed", HookPoint{HookKind::kPosEmbed, -1});
      for (int64_t l = 0; l < layers; ++l) {
        parts.emplace_back(absl::StrCat(l, "_attn_out"), HookPoint{HookKind::kAttnOut, l});
        parts.emplace_back(absl::StrCat(l, "_mlp_out"), HookPoint{HookKind::kMlpOut, l});
      }
    } else {
      for (int64_t l = 0; l < layers; ++l) {
        parts.emplace_back(absl::StrCat(l, "_pre"), HookPoint{HookKind::kResidPre, l});
      }
    }
    for (const auto& [label, point] : parts) hooks.Capture(point);
    hooks.Capture({HookKind::kLnFinalScale, -1});
    ForwardRequest forward;
    forward.tokens = at::tensor(spec.tokens, at::kLong).unsqueeze(0);
    LENSD_ASSIGN_OR_RETURN(const ForwardResult result, model.Forward(forward, &hooks));
    const int64_t p = out.position;
    const at::Tensor logits = result.logits[0][p].to(at::kFloat);
    out.target = spec.target >= 0 ? spec.target : logits.argmax().item<int64_t>();
    auto pick = [&](const at::Tensor& rows) {  // [C, V] -> [C] target (minus foil)
      at::Tensor v = rows.select(-1, out.target).to(at::kDouble);
      if (spec.foil >= 0) v = v - rows.select(-1, spec.foil).to(at::kDouble);
      return v.cpu();
    };
    out.logit = pick(logits.unsqueeze(0))[0].item<double>();
    std::vector<at::Tensor> stack;
    for (const auto& [label, point] : parts) {
      stack.push_back(hooks.Captured(point)[0][p]);
      out.labels.push_back(label);
    }
    const at::Tensor scale = hooks.Captured({HookKind::kLnFinalScale, -1})[0][p];  // [1]
    if (spec.mode == LayerAttributionMode::kDirectLogit) {
      const at::Tensor comps = at::stack(stack);
      LENSD_ASSIGN_OR_RETURN(const at::Tensor u, model.FrozenFinalNormAndUnembed(comps, scale));
      LENSD_ASSIGN_OR_RETURN(const at::Tensor b, model.FrozenFinalNormAndUnembed(
                                                     at::zeros_like(comps[0]).unsqueeze(0), scale));
      const at::Tensor values = pick(u.to(at::kFloat)) - pick(b.to(at::kFloat));
      out.bias = pick(b.to(at::kFloat))[0].item<double>();
      for (int64_t i = 0; i < values.size(0); ++i) out.values.push_back(values[i].item<double>());
      return out;
    }
    stack.push_back(result.residual[0][p]);
    out.labels.emplace_back("final_post");
    const at::Tensor resid = at::stack(stack);
    at::Tensor u;
    if (spec.mode == LayerAttributionMode::kLogitLensFrozen) {
      LENSD_ASSIGN_OR_RETURN(u, model.FrozenFinalNormAndUnembed(resid, scale));
    } else {
      LENSD_ASSIGN_OR_RETURN(u, model.FinalNormAndUnembed(resid));
    }
    const at::Tensor values = pick(u.to(at::kFloat));
    for (int64_t i = 0; i < values.size(0); ++i) out.values.push_back(values[i].item<double>());
    return out;
  });
}

}  // namespace lensd::engine
