// Capture points of the forward pass, named as TransformerLens names them (torch-free).
//
// Global: hook_embed [b,p,d] (token embedding, times sqrt(d) for Gemma), hook_pos_embed [b,p,d]
// (absolute-position models), ln_final.hook_scale [b,p,1], ln_final.hook_normalized [b,p,d],
// unembed.hook_in [b,p,d] (final norm output, the unembedding's input).
// Per block i, "blocks.{i}." + hook_resid_pre, ln1.hook_scale, ln1.hook_normalized, attn.hook_q,
// attn.hook_k, attn.hook_v [b,p,heads,d_head] (k, v with the key/value heads), attn.hook_rot_q,
// attn.hook_rot_k (rotary models), attn.hook_attn_scores, attn.hook_pattern [b,heads,q,k],
// attn.hook_z [b,p,heads,d_head], ln1_post.hook_scale, ln1_post.hook_normalized (Gemma 2's norm of
// the attention output), hook_attn_out, hook_resid_mid (not for parallel residual),
// ln2.hook_scale, ln2.hook_normalized, mlp.hook_pre, mlp.hook_pre_linear (gated MLPs),
// mlp.hook_post [b,p,d_mlp] (dense MLPs), mlp.hook_router_logits [b,p,experts],
// mlp.hook_expert_weights [b,p,experts] (the router's float32 softmax, before the top-k choice),
// mlp.hook_expert_indices [b,p,k] (int64: the chosen experts, most probable first),
// mlp.hook_expert_out [b,p,k,d] (each chosen expert's output before its weight; mixture-of-experts
// models, named as TransformerLens's MoE names its weights and indices), ln2_post.hook_scale,
// ln2_post.hook_normalized (Gemma 2), hook_mlp_out, hook_resid_post. hook_attn_out and hook_mlp_out
// are what is added to the residual, after the post-norms where a model has them (as
// TransformerLens places them).
#ifndef LENSD_CORE_ENGINE_MODEL_HOOK_NAMES_H_
#define LENSD_CORE_ENGINE_MODEL_HOOK_NAMES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd::engine {

struct ModelConfig;

enum class HookKind : uint8_t {
  // Global points.
  kEmbed,
  kPosEmbed,
  kLnFinalScale,
  kLnFinalNormalized,
  kUnembedIn,
  // Per-block points.
  kResidPre,
  kLn1Scale,
  kLn1Normalized,
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnRotQ,
  kAttnRotK,
  kAttnScores,
  kAttnPattern,
  kAttnZ,
  kLn1PostScale,
  kLn1PostNormalized,
  kAttnOut,
  kResidMid,
  kLn2Scale,
  kLn2Normalized,
  kMlpPre,
  kMlpPreLinear,
  kMlpPost,
  kMlpRouterLogits,
  kMlpExpertWeights,
  kMlpExpertIndices,
  kMlpExpertOut,
  kLn2PostScale,
  kLn2PostNormalized,
  kMlpOut,
  kResidPost,
};
inline constexpr int kNumGlobalHooks = 5;
inline constexpr int kNumBlockHooks = 28;

// A capture point; `layer` is -1 for global points.
struct HookPoint {
  HookKind kind;
  int64_t layer = -1;

  bool is_global() const { return static_cast<int>(kind) < kNumGlobalHooks; }
  bool operator==(const HookPoint& o) const { return kind == o.kind && layer == o.layer; }
};

// "blocks.3.hook_resid_pre", "hook_embed", ...
std::string HookName(HookPoint point);

// Parses a TransformerLens name and checks it exists in this model: INVALID_ARGUMENT says why
// (unknown name, layer out of range with the valid range, or a point this architecture lacks).
absl::StatusOr<HookPoint> ParseHookName(absl::string_view name, const ModelConfig& config);

// Whether the architecture described by `config` has the point at all.
bool HasHook(HookKind kind, const ModelConfig& config);

// Every point the model has, in forward order.
std::vector<HookPoint> AllHookPoints(const ModelConfig& config);

// Elements the point holds per position of one sequence; attention scores and patterns hold this
// many per pair of query and key positions (`per_key_position`).
struct HookShape {
  int64_t per_position = 0;
  bool per_key_position = false;
};
HookShape HookShapeOf(HookPoint point, const ModelConfig& config);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_HOOK_NAMES_H_
