// The mixture-of-experts MLP of Mixtral and OLMoE: a linear router scores num_experts gated MLPs
// per position, softmax in float32, the top experts_per_token run on that position, and their
// outputs are summed, each times its router probability (rescaled to sum to 1 where the config
// says so), as transformers' MixtralSparseMoeBlock computes it. Only the chosen experts run.
//
// Hook points, in order: mlp.hook_router_logits, mlp.hook_expert_weights (the softmax over every
// expert; an edit of either changes which experts are chosen), mlp.hook_expert_indices (capture
// only) and mlp.hook_expert_out [b, t, k, d] (each chosen expert's output before its weight, in
// the order of the indices; editable per slot like heads).
#ifndef LENSD_CORE_ENGINE_MODELS_MOE_H_
#define LENSD_CORE_ENGINE_MODELS_MOE_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/forward_context.h"
#include "core/engine/model/model_config.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::engine {

struct MoeWeights {
  at::Tensor router;                // [experts, d]
  std::vector<at::Tensor> gate_up;  // per expert: gate | up stacked, [2 d_mlp, d]
  std::vector<at::Tensor> down;     // per expert: [d, d_mlp]
};

// Where a family keeps block i's experts under "layers.{i}.": `block` + "gate.weight" for the
// router, `block` + "experts.{e}." + gate, up and down + ".weight" for expert e. The fused form
// transformers 5.x holds in memory (`block` + "experts.gate_up_proj" [experts, 2 d_mlp, d] and
// "experts.down_proj") is read too.
struct MoeNames {
  std::string block;
  std::string gate, up, down;
};

// Reads the expert counts (`experts_key`, `per_token_key`) and, where the family has one,
// `normalize_key` (default `normalize_default`) into `config`; INVALID_ARGUMENT names the field.
absl::Status ParseMoe(const nlohmann::json& json, const char* experts_key,
                      const char* per_token_key, const char* normalize_key, bool normalize_default,
                      ModelConfig* config);

absl::StatusOr<MoeWeights> LoadMoe(const ModelConfig& config, WeightLoader* weights, int64_t layer,
                                   const MoeNames& names);

// Block `layer`'s MLP output [b, t, d] for its normalized input h [b, t, d].
at::Tensor MoeMlp(int64_t layer, const at::Tensor& h, const MoeWeights& weights,
                  ForwardContext& ctx);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODELS_MOE_H_
