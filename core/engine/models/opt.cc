// OPT (model_type "opt"): learned absolute positions stored with an offset of 2 (row p + 2 holds
// position p), pre-LayerNorm blocks with separate q, k, v projections, ReLU MLP, attention
// softmax in float32, and, where word_embed_proj_dim differs from hidden_size (opt-350m), the
// embeddings projected in (project_in) and the final stream projected out (project_out) before
// the tied unembedding; project_out is folded into the unembedding ([vocab, d_model]), so the
// logit lens and direct logit attribution see one linear map. Post-norm OPT
// (do_layer_norm_before false) and a removed or non-affine final norm are refused by name.
#include <ATen/ATen.h>

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/model/ops.h"
#include "core/engine/models/architectures.h"
#include "core/engine/models/pre_norm_block.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

constexpr int64_t kPositionOffset = 2;

class Opt : public CausalLm {
 public:
  Opt(const ModelConfig& config, int64_t bytes, at::Tensor embed, at::Tensor project_in,
      at::Tensor positions, std::vector<PreNormLayer> layers, NormWeights final_norm,
      at::Tensor unembed)
      : CausalLm(config, bytes, std::move(final_norm), std::move(unembed)),
        embed_(std::move(embed)),
        project_in_(std::move(project_in)),
        positions_(std::move(positions)),
        layers_(std::move(layers)) {}

 protected:
  at::Tensor Embed(const at::Tensor& tokens, ForwardContext& ctx) const override {
    at::Tensor tok = at::embedding(embed_, tokens);
    if (project_in_.defined()) tok = at::linear(tok, project_in_);
    tok = ctx.Hook(HookKind::kEmbed, -1, tok);
    const at::Tensor pos = ctx.Hook(HookKind::kPosEmbed, -1,
                                    at::embedding(positions_, ctx.positions() + kPositionOffset));
    return tok + pos;
  }

  at::Tensor Block(int64_t i, const at::Tensor& x, ForwardContext& ctx) const override {
    return PreNormBlock(i, x, layers_[static_cast<size_t>(i)], {config().attention_scale, 0, true},
                        ctx);
  }

 private:
  at::Tensor embed_, project_in_, positions_;
  std::vector<PreNormLayer> layers_;
};

// A boolean option of OPT's config that lensd serves only at `served`.
absl::Status RequireOption(const nlohmann::json& j, const char* key, bool served,
                           const char* what) {
  LENSD_ASSIGN_OR_RETURN(const bool value, json_fields::Bool(j, key, served, ""));
  if (value == served) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", value ? "true" : "false", " (", what,
                                                 ") is not implemented; lensd serves ", key, " ",
                                                 served ? "true" : "false"));
}

absl::StatusOr<ModelConfig> ParseConfig(const nlohmann::json& j) {
  ModelConfig c;
  c.model_type = "opt";
  LENSD_ASSIGN_OR_RETURN(c.vocab_size, json_fields::Int(j, "vocab_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.d_model, json_fields::Int(j, "hidden_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_layers, json_fields::Int(j, "num_hidden_layers", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_heads, json_fields::Int(j, "num_attention_heads", ""));
  LENSD_ASSIGN_OR_RETURN(c.d_mlp, json_fields::Int(j, "ffn_dim", 3072, ""));
  LENSD_ASSIGN_OR_RETURN(c.max_positions, json_fields::Int(j, "max_position_embeddings", 2048, ""));
  LENSD_ASSIGN_OR_RETURN(c.embed_proj_dim,
                         json_fields::Int(j, "word_embed_proj_dim", c.d_model, ""));
  LENSD_ASSIGN_OR_RETURN(const auto activation,
                         json_fields::OptionalString(j, "activation_function", ""));
  c.activation = activation.value_or("relu");
  LENSD_ASSIGN_OR_RETURN(c.tied_embeddings, json_fields::Bool(j, "tie_word_embeddings", true, ""));
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "enable_bias", true, ""));
  c.attn_out_bias = c.mlp_bias = c.qkv_bias;
  LENSD_RETURN_IF_ERROR(RequireOption(j, "do_layer_norm_before", true, "post-norm blocks"));
  LENSD_RETURN_IF_ERROR(RequireOption(j, "_remove_final_layer_norm", false, "no final norm"));
  LENSD_RETURN_IF_ERROR(
      RequireOption(j, "layer_norm_elementwise_affine", true, "norms without weights"));
  LENSD_RETURN_IF_ERROR(ParseSpecialTokenIds(j, &c));
  LENSD_RETURN_IF_ERROR(SplitFullHeads(&c, "hidden_size", "num_attention_heads"));
  c.norm = NormKind::kLayerNorm;
  c.norm_eps = 1e-5;  // torch.nn.LayerNorm's default; OPT's config has no field for it
  c.absolute_positions = true;
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> Load(const ModelConfig& c, WeightLoader* w) {
  const int64_t d = c.d_model, e = c.embed_proj_dim;
  const auto norm = [&](const std::string& name) { return LoadLayerNorm(w, name, d); };
  const auto bias =
      [&](const std::vector<std::string>& names,
          const std::vector<std::vector<int64_t>>& shapes) -> absl::StatusOr<at::Tensor> {
    if (!c.qkv_bias) return at::Tensor();
    return w->GetStacked(names, shapes);
  };
  LENSD_ASSIGN_OR_RETURN(at::Tensor embed,
                         w->Get("decoder.embed_tokens.weight", {c.vocab_size, e}));
  at::Tensor project_in, project_out;
  if (e != d) {
    LENSD_ASSIGN_OR_RETURN(project_in, w->Get("decoder.project_in.weight", {d, e}));
    LENSD_ASSIGN_OR_RETURN(project_out, w->Get("decoder.project_out.weight", {e, d}));
  }
  LENSD_ASSIGN_OR_RETURN(at::Tensor positions, w->Get("decoder.embed_positions.weight",
                                                      {c.max_positions + kPositionOffset, d}));
  std::vector<PreNormLayer> layers(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("decoder.layers.", i, ".");
    const std::string a = p + "self_attn.";
    PreNormLayer& l = layers[static_cast<size_t>(i)];
    LENSD_ASSIGN_OR_RETURN(l.ln1, norm(p + "self_attn_layer_norm"));
    LENSD_ASSIGN_OR_RETURN(
        l.qkv_w, w->GetStacked({a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"},
                               {{d, d}, {d, d}, {d, d}}));
    LENSD_ASSIGN_OR_RETURN(
        l.qkv_b, bias({a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias"}, {{d}, {d}, {d}}));
    LENSD_ASSIGN_OR_RETURN(l.o_w, w->Get(a + "out_proj.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.o_b, bias({a + "out_proj.bias"}, {{d}}));
    LENSD_ASSIGN_OR_RETURN(l.ln2, norm(p + "final_layer_norm"));
    LENSD_ASSIGN_OR_RETURN(l.in_w, w->Get(p + "fc1.weight", {c.d_mlp, d}));
    LENSD_ASSIGN_OR_RETURN(l.in_b, bias({p + "fc1.bias"}, {{c.d_mlp}}));
    LENSD_ASSIGN_OR_RETURN(l.out_w, w->Get(p + "fc2.weight", {d, c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_b, bias({p + "fc2.bias"}, {{d}}));
  }
  LENSD_ASSIGN_OR_RETURN(NormWeights final_norm, norm("decoder.final_layer_norm"));
  at::Tensor unembed = embed;
  if (!c.tied_embeddings) {
    LENSD_ASSIGN_OR_RETURN(unembed, w->Get("lm_head.weight", {c.vocab_size, e}));
  }
  if (project_out.defined()) unembed = at::matmul(unembed, project_out);  // [vocab, d]
  return std::unique_ptr<CausalLm>(std::make_unique<Opt>(
      c, w->bytes_loaded(), std::move(embed), std::move(project_in), std::move(positions),
      std::move(layers), std::move(final_norm), std::move(unembed)));
}

}  // namespace

Architecture OptArchitecture() { return {"opt", {"model.", ""}, ParseConfig, Load}; }

}  // namespace lensd::engine
