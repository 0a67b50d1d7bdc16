#include "core/engine/models/moe.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "core/engine/model/ops.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {

absl::Status ParseMoe(const nlohmann::json& j, const char* experts_key, const char* per_token_key,
                      const char* normalize_key, bool normalize_default, ModelConfig* c) {
  LENSD_ASSIGN_OR_RETURN(c->num_experts, json_fields::Int(j, experts_key, ""));
  LENSD_ASSIGN_OR_RETURN(c->experts_per_token, json_fields::Int(j, per_token_key, ""));
  c->normalize_expert_weights = normalize_default;
  if (normalize_key != nullptr) {
    LENSD_ASSIGN_OR_RETURN(c->normalize_expert_weights,
                           json_fields::Bool(j, normalize_key, normalize_default, ""));
  }
  if (c->num_experts <= 0 || c->num_experts > (int64_t{1} << 16)) {
    return absl::InvalidArgumentError(
        absl::StrCat(experts_key, " must be a positive count of experts, got ", c->num_experts));
  }
  if (c->experts_per_token <= 0 || c->experts_per_token > c->num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(per_token_key, " must be between 1 and ",
                                                   experts_key, " (", c->num_experts, "), got ",
                                                   c->experts_per_token));
  }
  return absl::OkStatus();
}

absl::StatusOr<MoeWeights> LoadMoe(const ModelConfig& c, WeightLoader* w, int64_t layer,
                                   const MoeNames& names) {
  const int64_t d = c.d_model, m = c.d_mlp, experts = c.num_experts;
  const std::string p = absl::StrCat("layers.", layer, ".", names.block);
  MoeWeights out;
  LENSD_ASSIGN_OR_RETURN(out.router, w->Get(p + "gate.weight", {experts, d}));
  if (w->Has(p + "experts.gate_up_proj")) {
    LENSD_ASSIGN_OR_RETURN(const at::Tensor gate_up,
                           w->Get(p + "experts.gate_up_proj", {experts, 2 * m, d}));
    LENSD_ASSIGN_OR_RETURN(const at::Tensor down, w->Get(p + "experts.down_proj", {experts, d, m}));
    for (int64_t e = 0; e < experts; ++e) {
      out.gate_up.push_back(gate_up[e]);
      out.down.push_back(down[e]);
    }
    return out;
  }
  for (int64_t e = 0; e < experts; ++e) {
    const std::string x = absl::StrCat(p, "experts.", e, ".");
    LENSD_ASSIGN_OR_RETURN(
        out.gate_up.emplace_back(),
        w->GetStacked({x + names.gate + ".weight", x + names.up + ".weight"}, {{m, d}, {m, d}}));
    LENSD_ASSIGN_OR_RETURN(out.down.emplace_back(), w->Get(x + names.down + ".weight", {d, m}));
  }
  return out;
}

at::Tensor MoeMlp(int64_t i, const at::Tensor& h, const MoeWeights& w, ForwardContext& ctx) {
  const ModelConfig& c = ctx.config();
  const int64_t b = h.size(0), t = h.size(1), d = h.size(2), k = c.experts_per_token;
  const at::Tensor logits = ctx.Hook(HookKind::kMlpRouterLogits, i, Linear(h, w.router, {}));
  const at::Tensor probs =
      ctx.Hook(HookKind::kMlpExpertWeights, i, at::softmax(logits.to(at::kFloat), -1));
  auto [top, chosen] = probs.topk(k, -1);
  chosen = ctx.Hook(HookKind::kMlpExpertIndices, i, chosen);
  if (c.normalize_expert_weights) top = top / top.sum(-1, true);
  // OLMoE rounds the weights to the model's dtype before weighing; Mixtral weighs in float32.
  if (!c.expert_weights_in_float32) top = top.to(h.scalar_type());
  const at::Tensor x = h.reshape({b * t, d});
  const at::Tensor slots = chosen.reshape({b * t, k});
  at::Tensor out = at::zeros({b * t, k, d}, h.options());
  for (int64_t e = 0; e < c.num_experts; ++e) {
    const at::Tensor where = (slots == e).nonzero();  // [n, 2]: position, slot
    if (where.size(0) == 0) continue;
    const at::Tensor position = where.select(1, 0), slot = where.select(1, 1);
    const std::vector<at::Tensor> gate_up =
        Linear(x.index_select(0, position), w.gate_up[static_cast<size_t>(e)], {})
            .split(c.d_mlp, -1);
    const at::Tensor y = Linear(Activation(c.activation, gate_up[0]) * gate_up[1],
                                w.down[static_cast<size_t>(e)], {});
    out.index_put_({position, slot}, y);
  }
  const at::Tensor expert_out = ctx.Hook(HookKind::kMlpExpertOut, i, out.view({b, t, k, d}));
  const at::Tensor weighted = expert_out * top.unsqueeze(-1);
  return weighted.to(h.scalar_type()).sum(-2);
}

}  // namespace lensd::engine
