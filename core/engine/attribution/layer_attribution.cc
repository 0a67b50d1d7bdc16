// Direct logit attribution and the per-layer logit lens at one position (attribution.md §4).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/attribution/attribution.h"
#include "core/engine/interventions/interventions.h"
#include "core/engine/model/torch_errors.h"
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

// Layer `layer`'s attention output at position `p` split by head, [H + 1, d]: row h is head h's
// contribution (hook_z with only head h kept, minus the output bias), the last row the bias
// (hook_z zeroed). Exact because the output projection is affine in hook_z; one batched forward
// of H + 1 rows that stops after the layer.
absl::StatusOr<at::Tensor> HeadContributions(const CausalLm& model,
                                             const std::vector<int64_t>& tokens, int64_t layer,
                                             int64_t p, const Interventions* edits) {
  const int64_t heads = model.config().num_heads;
  Hooks hooks(model.config().num_layers);
  if (edits != nullptr) edits->Install(hooks);
  hooks.Edit({HookKind::kAttnZ, layer}, [heads](const at::Tensor& z) {  // [H + 1, T, H, d_head]
    return z * at::eye(heads + 1, heads, z.options()).view({heads + 1, 1, heads, 1});
  });
  hooks.Capture({HookKind::kAttnOut, layer});
  ForwardRequest forward;
  forward.tokens = at::tensor(tokens, at::kLong).unsqueeze(0).expand({heads + 1, -1}).contiguous();
  forward.stop_at_layer = layer + 1;
  LENSD_RETURN_IF_ERROR(model.Forward(forward, &hooks).status());
  const at::Tensor out = hooks.Captured({HookKind::kAttnOut, layer}).select(1, p);
  const at::Tensor bias = out[heads];
  return at::cat({out.narrow(0, 0, heads) - bias, bias.unsqueeze(0)});
}

}  // namespace

absl::StatusOr<LayerAttributionOutput> AttributeLayers(const CausalLm& model,
                                                       const LayerAttributionSpec& spec,
                                                       const Interventions* edits) {
  const ModelConfig& config = model.config();
  LENSD_RETURN_IF_ERROR(Validate(spec, config.vocab_size));
  if (config.residual_after_norm && spec.mode == LayerAttributionMode::kDirectLogit) {
    return absl::FailedPreconditionError(absl::StrCat(
        "mode: direct logit attribution needs a residual stream that is the sum of the embedding "
        "and the blocks' outputs; this ",
        config.model_type,
        " model takes each residual after its norm (apply_residual_connection_post_layernorm), so "
        "use the logit-lens modes"));
  }
  if (config.post_norms && spec.per_head && spec.mode == LayerAttributionMode::kDirectLogit) {
    return absl::FailedPreconditionError(absl::StrCat(
        "per_head: this ", config.model_type,
        " model normalizes the attention output (ln1_post) before adding it to the residual, so "
        "the heads' terms would not add up to hook_attn_out; attribute whole attention layers"));
  }
  return CatchTorch("layer attribution", [&]() -> absl::StatusOr<LayerAttributionOutput> {
    c10::InferenceMode inference;
    const int64_t layers = config.num_layers;
    LayerAttributionOutput out;
    out.position = spec.position < 0 ? static_cast<int64_t>(spec.tokens.size()) - 1 : spec.position;
    Hooks hooks(layers);
    if (edits != nullptr) edits->Install(hooks);
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
    const at::Tensor scale = hooks.Captured({HookKind::kLnFinalScale, -1})[0][p];  // [1]
    if (spec.mode == LayerAttributionMode::kDirectLogit && config.final_softcap > 0.0) {
      // The terms split the logit before the soft cap (what they sum to), as TransformerLens's.
      LENSD_ASSIGN_OR_RETURN(const at::Tensor uncapped,
                             model.FrozenFinalNormAndUnembed(result.residual[0][p], scale));
      out.logit = pick(uncapped.to(at::kFloat).unsqueeze(0))[0].item<double>();
    }
    std::vector<at::Tensor> stack;
    for (const auto& [label, point] : parts) {
      if (spec.per_head && point.kind == HookKind::kAttnOut) {
        LENSD_ASSIGN_OR_RETURN(const at::Tensor split,
                               HeadContributions(model, spec.tokens, point.layer, p, edits));
        for (int64_t h = 0; h < config.num_heads; ++h) {
          stack.push_back(split[h]);
          out.labels.push_back(absl::StrCat(point.layer, "_attn_head", h));
        }
        stack.push_back(split[config.num_heads]);
        out.labels.push_back(absl::StrCat(point.layer, "_attn_bias"));
        continue;
      }
      stack.push_back(hooks.Captured(point)[0][p]);
      out.labels.push_back(label);
    }
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
      u = model.SoftCap(u);
    } else {
      LENSD_ASSIGN_OR_RETURN(u, model.FinalNormAndUnembed(resid));
    }
    const at::Tensor values = pick(u.to(at::kFloat));
    for (int64_t i = 0; i < values.size(0); ++i) out.values.push_back(values[i].item<double>());
    return out;
  });
}

}  // namespace lensd::engine
