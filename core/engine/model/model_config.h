// What the engine needs to know about a model, read from its config.json by the architecture's
// parser (torch-free). Plain value type.
#ifndef LENSD_CORE_ENGINE_MODEL_MODEL_CONFIG_H_
#define LENSD_CORE_ENGINE_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::engine {

enum class NormKind {
  kLayerNorm,     // (x - mean) / sqrt(var + eps) * w + b
  kRmsNorm,       // Llama: fp32 x * rsqrt(mean(x^2) + eps), cast back, then * w
  kGemmaRmsNorm,  // Gemma: fp32 x * rsqrt(mean(x^2) + eps) * (1 + w), then cast
  kOlmoRmsNorm,   // OLMo 2: fp32 x * rsqrt(mean(x^2) + eps) * w, then cast
};

// Where q and k are normalized before the rotary (with the model's NormKind): not at all, over
// each head's dimensions (Qwen3, Gemma 3), or over all heads' projection at once (OLMo 2).
enum class QkNorm { kNone, kPerHead, kAcrossHeads };

// Rotary position embedding: which dimensions rotate and how the frequencies are scaled.
struct RopeConfig {
  std::string type = "default";  // default | linear | dynamic | llama3 | longrope
  double theta = 10000.0;
  int64_t rotary_dim = 0;  // leading dimensions of each head that rotate (even)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_positions = 0;
  // longrope (Phi-3): per-frequency divisors, the short ones while a sequence is at most
  // original_max_positions long, the long ones past it; cos and sin times attention_factor.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;
  // GPT-J's layout: dimensions 2i and 2i + 1 rotate together ("rotate_every_two"); otherwise i
  // pairs with i + rotary_dim / 2 ("rotate_half").
  bool interleaved = false;
};

struct ModelConfig {
  std::string model_type;  // config.json "model_type", e.g. "gpt2", "llama"
  int64_t num_layers = 0;
  int64_t d_model = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t d_mlp = 0;
  int64_t embed_proj_dim = 0;  // OPT's word_embed_proj_dim: the embeddings' width (0: d_model)
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  NormKind norm = NormKind::kLayerNorm;
  double norm_eps = 1e-5;
  std::string activation;  // Hugging Face ACT2FN name, e.g. "gelu_new", "silu"
  bool gated_mlp = false;  // down(act(gate(x)) * up(x))
  // Mixture of experts (Mixtral, OLMoE): each block's MLP is num_experts gated MLPs of d_mlp, of
  // which a router picks experts_per_token per position; 0 experts: one dense MLP.
  int64_t num_experts = 0;
  int64_t experts_per_token = 0;
  // Whether the chosen experts' router probabilities are rescaled to sum to 1 (Mixtral; OLMoE's
  // norm_topk_prob false keeps them as they are).
  bool normalize_expert_weights = true;
  bool expert_weights_in_float32 = true;  // OLMoE rounds them to the model's dtype first
  bool parallel_residual = false;         // x + attn(ln1(x)) + mlp(ln2(x))
  // BLOOM's apply_residual_connection_post_layernorm: each residual is taken after the norm,
  // ln1(x) + attn(ln1(x)), then ln2(mid) + mlp(ln2(mid)).
  bool residual_after_norm = false;
  bool tied_embeddings = false;
  bool qkv_bias = false;
  bool attn_out_bias = false;
  bool mlp_bias = false;
  QkNorm qk_norm = QkNorm::kNone;
  // OLMoE's clip_qkv: q and k (after their norms) and v clamped to [-clip, clip]; 0: none.
  double clip_qkv = 0.0;
  // Gemma 2 and 3, OLMo 2: a norm on the attention output and on the MLP output before each is
  // added to the residual (ln1_post, ln2_post); OLMo 2 has no pre-norms (ln1, ln2) besides.
  bool post_norms = false;
  bool pre_norms = true;
  // Gemma 2's soft-capping, cap * tanh(x / cap): of the attention scores before the mask, and of
  // the final logits; 0 for none.
  double attn_softcap = 0.0;
  double final_softcap = 0.0;
  bool absolute_positions = false;  // learned position embedding added to the tokens' (GPT-2)
  bool rotary = false;
  RopeConfig rope;
  // Gemma 3: the sliding-window layers' own rotary (a lower base, no scaling); unset: `rope`.
  std::optional<RopeConfig> local_rope;
  bool alibi = false;            // BLOOM: per-head linear biases on the keys' positions, no rotary
  double embedding_scale = 1.0;  // Gemma multiplies embeddings by sqrt(d_model)
  double attention_scale = 0.0;  // multiplies q.k; 0 means 1/sqrt(head_dim)
  bool scale_attn_by_inverse_layer_idx = false;  // GPT-2 option: also divide by layer + 1
  int64_t sliding_window = 0;  // 0: full attention; else keys with q_pos - k_pos < window
  // Per layer, whether it attends through the window (config.json's layer_types, or derived from
  // Qwen2's max_window_layers); empty: every layer does.
  std::vector<bool> sliding_layers;
  std::string torch_dtype;  // the checkpoint's declared dtype ("" if absent)
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;

  bool moe() const { return num_experts > 0; }
  // Whether `layer` turns q and k with local_rope (Gemma 3's sliding layers, window or not).
  bool LocalRotaryAt(int64_t layer) const {
    return local_rope.has_value() && !sliding_layers.empty() &&
           sliding_layers[static_cast<size_t>(layer)];
  }
  // Whether `layer` attends through the sliding window.
  bool SlidingAt(int64_t layer) const {
    return sliding_window > 0 &&
           (sliding_layers.empty() || sliding_layers[static_cast<size_t>(layer)]);
  }
};

// A family's names and defaults for the top-level rotary fields of its 4.x configs.
struct RopeDefaults {
  const char* theta_key = "rope_theta";
  double theta = 10000.0;
  const char* fraction_key = "partial_rotary_factor";  // of each head's dimensions that rotate
  double fraction = 1.0;
  bool longrope_aliases = false;  // Phi-3 reads rope types "su" and "yarn" as "longrope"
};

// Reads rotary settings from config.json in both the 4.x form (rope_theta, partial_rotary_factor,
// rope_scaling with "type" or "rope_type") and the 5.x form (rope_parameters with rope_theta and
// partial_rotary_factor inside), with transformers 5.x's precedence. rotary_dim is
// int(head_dim * fraction).
absl::StatusOr<RopeConfig> ParseRope(const nlohmann::json& config, const RopeDefaults& defaults,
                                     int64_t head_dim);

// Reads config.json's layer_types (one "full_attention" or "sliding_attention" per layer) as
// whether each layer attends through the sliding window. INVALID_ARGUMENT names the entry.
absl::StatusOr<std::vector<bool>> ParseLayerTypes(const nlohmann::json& config, int64_t num_layers);

// Reads bos_token_id and eos_token_id (an integer or a list) into `out`.
absl::Status ParseSpecialTokenIds(const nlohmann::json& config, ModelConfig* out);

// For families whose every head has its own keys and values: checks that the `heads_field` heads
// divide the `width_field` width (INVALID_ARGUMENT naming both), then sets num_kv_heads,
// head_dim and attention_scale (1 / sqrt(head_dim)).
absl::Status SplitFullHeads(ModelConfig* config, absl::string_view width_field,
                            absl::string_view heads_field);

// Checks the sizes every architecture shares; INVALID_ARGUMENT names the field.
absl::Status ValidateSizes(const ModelConfig& config);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_MODEL_CONFIG_H_
