#include "core/engine/model/hook_names.h"

#include <array>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/engine/model/model_config.h"

namespace lensd::engine {
namespace {

constexpr std::array<const char*, kNumGlobalHooks + kNumBlockHooks> kSuffixes = {
    "hook_embed",
    "hook_pos_embed",
    "ln_final.hook_scale",
    "ln_final.hook_normalized",
    "unembed.hook_in",
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_rot_q",
    "attn.hook_rot_k",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "ln1_post.hook_scale",
    "ln1_post.hook_normalized",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_pre_linear",
    "mlp.hook_post",
    "mlp.hook_router_logits",
    "mlp.hook_expert_weights",
    "mlp.hook_expert_indices",
    "mlp.hook_expert_out",
    "ln2_post.hook_scale",
    "ln2_post.hook_normalized",
    "hook_mlp_out",
    "hook_resid_post",
};

}  // namespace

std::string HookName(HookPoint point) {
  const char* suffix = kSuffixes[static_cast<size_t>(point.kind)];
  if (point.is_global()) return suffix;
  return absl::StrCat("blocks.", point.layer, ".", suffix);
}

bool HasHook(HookKind kind, const ModelConfig& config) {
  switch (kind) {
    case HookKind::kPosEmbed:
      return config.absolute_positions;
    case HookKind::kAttnRotQ:
    case HookKind::kAttnRotK:
      return config.rotary;
    case HookKind::kResidMid:
      return !config.parallel_residual;
    case HookKind::kMlpPre:
    case HookKind::kMlpPost:
      return !config.moe();  // the experts' own activations are not captured
    case HookKind::kMlpPreLinear:
      return config.gated_mlp && !config.moe();
    case HookKind::kMlpRouterLogits:
    case HookKind::kMlpExpertWeights:
    case HookKind::kMlpExpertIndices:
    case HookKind::kMlpExpertOut:
      return config.moe();
    case HookKind::kLn1PostScale:
    case HookKind::kLn1PostNormalized:
    case HookKind::kLn2PostScale:
    case HookKind::kLn2PostNormalized:
      return config.post_norms;
    case HookKind::kLn1Scale:
    case HookKind::kLn1Normalized:
    case HookKind::kLn2Scale:
    case HookKind::kLn2Normalized:
      return config.pre_norms;  // OLMo 2 normalizes only after attention and the MLP
    default:
      return true;
  }
}

absl::StatusOr<HookPoint> ParseHookName(absl::string_view name, const ModelConfig& config) {
  HookPoint point;
  absl::string_view suffix = name;
  const bool in_block = absl::ConsumePrefix(&suffix, "blocks.");
  if (in_block) {
    const size_t dot = suffix.find('.');
    if (dot == absl::string_view::npos || !absl::SimpleAtoi(suffix.substr(0, dot), &point.layer)) {
      return absl::InvalidArgumentError(
          absl::StrCat("hook \"", name, "\" is not of the form blocks.<layer>.<hook>"));
    }
    suffix.remove_prefix(dot + 1);
  }
  const int first = in_block ? kNumGlobalHooks : 0;
  const int last = in_block ? kNumGlobalHooks + kNumBlockHooks : kNumGlobalHooks;
  bool found = false;
  for (int k = first; k < last && !found; ++k) {
    if (suffix == kSuffixes[static_cast<size_t>(k)]) {
      point.kind = static_cast<HookKind>(k);
      found = true;
    }
  }
  if (!found) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown hook \"", name,
        "\"; hooks are TransformerLens names such as hook_embed, blocks.0.hook_resid_pre, "
        "blocks.0.attn.hook_pattern, blocks.0.mlp.hook_post, ln_final.hook_scale"));
  }
  if (in_block && (point.layer < 0 || point.layer >= config.num_layers)) {
    return absl::InvalidArgumentError(absl::StrCat("hook \"", name, "\": layer ", point.layer,
                                                   " out of range; model has layers 0..",
                                                   config.num_layers - 1));
  }
  if (!HasHook(point.kind, config)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hook \"", name, "\" does not exist in a ", config.model_type, " model"));
  }
  return point;
}

std::vector<HookPoint> AllHookPoints(const ModelConfig& config) {
  std::vector<HookPoint> out;
  const auto add = [&](HookKind kind, int64_t layer) {
    if (HasHook(kind, config)) out.push_back({kind, layer});
  };
  add(HookKind::kEmbed, -1);
  add(HookKind::kPosEmbed, -1);
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (int k = kNumGlobalHooks; k < kNumGlobalHooks + kNumBlockHooks; ++k) {
      add(static_cast<HookKind>(k), layer);
    }
  }
  add(HookKind::kLnFinalScale, -1);
  add(HookKind::kLnFinalNormalized, -1);
  add(HookKind::kUnembedIn, -1);
  return out;
}

HookShape HookShapeOf(HookPoint point, const ModelConfig& c) {
  const int64_t kv_heads = c.num_kv_heads > 0 ? c.num_kv_heads : c.num_heads;
  switch (point.kind) {
    case HookKind::kLnFinalScale:
    case HookKind::kLn1Scale:
    case HookKind::kLn2Scale:
    case HookKind::kLn1PostScale:
    case HookKind::kLn2PostScale:
      return {1, false};
    case HookKind::kAttnQ:
    case HookKind::kAttnRotQ:
    case HookKind::kAttnZ:
      return {c.num_heads * c.head_dim, false};
    case HookKind::kAttnK:
    case HookKind::kAttnV:
    case HookKind::kAttnRotK:
      return {kv_heads * c.head_dim, false};
    case HookKind::kAttnScores:
    case HookKind::kAttnPattern:
      return {c.num_heads, true};
    case HookKind::kMlpPre:
    case HookKind::kMlpPreLinear:
    case HookKind::kMlpPost:
      return {c.d_mlp, false};
    case HookKind::kMlpRouterLogits:
    case HookKind::kMlpExpertWeights:
      return {c.num_experts, false};
    case HookKind::kMlpExpertIndices:
      return {c.experts_per_token, false};
    case HookKind::kMlpExpertOut:
      return {c.experts_per_token * c.d_model, false};
    default:
      return {c.d_model, false};
  }
}

}  // namespace lensd::engine
