// Torch-free requests and results of the SAE and attribution work (EncodeSae, NodeAttribution,
// LayerAttribution); the math is in ../shared/specs/attribution.md and engine/attribution.h.
//
// Positions index the request's tokens (0 = the first, BOS if the caller put one there).
#ifndef LENSD_CORE_ATTRIBUTION_TYPES_H_
#define LENSD_CORE_ATTRIBUTION_TYPES_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/intervention_types.h"

namespace lensd {

// What a loaded SAE is; fixed after load.
struct SaeDescription {
  std::string name;
  std::string format;        // "saelens" | "sparsify"
  std::string architecture;  // standard | gated | jumprelu | topk
  std::string hook_point;    // TransformerLens name it reads
  int64_t d_in = 0;
  int64_t d_sae = 0;
  int64_t k = 0;  // topk only
  std::string dtype;
  int64_t bytes = 0;
  bool apply_b_dec_to_input = true;
  std::string normalize_activations;  // none | constant_norm_rescale | layer_norm
  bool prepend_bos = true;
  bool exclude_special_tokens = false;
  std::string model_name;
  std::string neuronpedia_id;
};

// How LoadSae attaches an SAE folder.
struct SaeLoadOptions {
  std::string hook_point;  // TransformerLens name overriding the cfg's; "" keeps it
  std::string dtype;       // float32 | bfloat16 | float16; "" keeps the cfg's
};

struct EncodeSaeSpec {
  std::vector<int64_t> tokens;
  std::vector<std::string> saes;  // empty: every loaded SAE
  int64_t top_k = 16;             // features per position, largest first; 0: every active one
  double threshold = 0;           // report features with activation > threshold
  std::vector<int64_t> excluded_positions;  // features zeroed there (BOS, special tokens)
};

// One SAE's features for the sequence. Features of position p are
// indices/values[offsets[p], offsets[p + 1]).
struct SaeEncoding {
  std::string sae;
  std::string hook_point;
  std::vector<int64_t> offsets;
  std::vector<int64_t> indices;
  std::vector<float> values;
  std::vector<int64_t> l0;        // active features per position
  std::vector<float> error_norm;  // ||x - x^|| per position
  std::vector<float> fvu;         // ||x - x^||^2 / ||x - mean_positions(x)||^2 per position
  double fvu_total = 0;           // the same ratio summed over the included positions
};

enum class MetricKind {
  kLoss,       // -log p(tokens[p + 1] | logits at p), summed over positions (token-trace)
  kLogit,      // logit of target at each position
  kLogProb,    // log-softmax of target
  kProb,       // softmax of target
  kLogitDiff,  // logit(target) - logit(foil) (SFC's paired metric)
};

struct MetricSpec {
  MetricKind kind = MetricKind::kLoss;
  std::vector<int64_t> positions;  // where logits are read; empty: the last token's prediction
                                   // (T - 2 for kLoss, T - 1 otherwise)
  int64_t target = -1;             // -1: the model's top-1 token at the first position
  int64_t foil = -1;               // kLogitDiff only (required)
};

// kMean: the mean over every position of the reference sequences; kMeanPerPosition: the mean
// over the reference sequences at each position (all of the input's length; SFC's mean ablation).
enum class AttributionBaseline { kZero, kMean, kPatch, kMeanPerPosition };
enum class AttributionMethod { kAttributionPatching, kIntegratedGradients, kExact };
enum class ErrorNodes { kContracted, kPerDimension };
// kPatchEffect: effect = (baseline - value) . grad ~ m(patched) - m(clean) (SFC's indirect
// effect). kTokenTrace: effect = (value - baseline) . grad (token-trace's ie = value x grad for a
// zero baseline): the opposite sign.
enum class SignConvention { kPatchEffect, kTokenTrace };

struct NodeAttributionSpec {
  std::vector<int64_t> tokens;
  std::vector<std::string> saes;  // empty: every loaded SAE
  MetricSpec metric;
  AttributionBaseline baseline = AttributionBaseline::kZero;
  std::vector<int64_t> patch_tokens;            // kPatch: same length as tokens
  std::vector<std::vector<int64_t>> reference;  // kMean, kMeanPerPosition: the baseline's sequences
  AttributionMethod method = AttributionMethod::kAttributionPatching;
  int64_t ig_steps = 10;
  ErrorNodes error_nodes = ErrorNodes::kContracted;
  SignConvention sign = SignConvention::kPatchEffect;
  int64_t top_n = 0;          // keep the n largest |effect|; 0: all
  double min_abs_effect = 0;  // keep |effect| > this
  std::vector<int64_t> excluded_positions;
  std::vector<InterventionSpec> interventions;  // edits every pass runs with
};

struct AttributionNode {
  std::string sae;
  std::string hook_point;
  int64_t layer = -1;
  std::string module_type;  // resid | attn | mlp | embed
  int64_t position = 0;
  bool error = false;
  int64_t index = -1;  // feature; error dimension (per-dimension); -1 contracted error
  float value = 0;     // activation (contracted error: ||e||)
  float baseline = 0;  // the baseline value (contracted error: ||e'||)
  float grad = 0;      // d m / d value (contracted error: along e, so value x grad = e . G)
  float effect = 0;    // in the request's sign convention
};

struct NodeAttributionOutput {
  int64_t target = -1;  // the metric's target token (resolved; the loss's next token, or -1)
  double metric = 0;    // m(clean)
  double patched_metric = std::numeric_limits<double>::quiet_NaN();  // m(patch) for kPatch
  double total_effect = std::numeric_limits<double>::quiet_NaN();    // m(patch) - m(clean)
  double sum_of_effects = 0;  // over every node, before filtering, in the sign convention
  int64_t nodes_considered = 0;
  std::vector<AttributionNode> nodes;  // sorted by |effect|, largest first
};

enum class LayerAttributionMode {
  kDirectLogit,      // embed, pos_embed, each attn_out and mlp_out, final norm's scale frozen
  kLogitLens,        // the residual before each block and after the last, norm recomputed
  kLogitLensFrozen,  // the same with the final norm's scale frozen from the real forward
};

struct LayerAttributionSpec {
  std::vector<int64_t> tokens;
  int64_t position = -1;  // -1: the last token
  int64_t target = -1;    // -1: the model's top-1 token there
  int64_t foil = -1;      // >= 0: attribute logit(target) - logit(foil)
  LayerAttributionMode mode = LayerAttributionMode::kDirectLogit;
  // kDirectLogit: each attention output split into its heads ("<l>_attn_head<h>") and the output
  // projection's bias ("<l>_attn_bias").
  bool per_head = false;
  // Edits the forward passes run with (the model as edited is explained; terms added by an edit
  // at a residual point are not among the components, so they no longer sum to the logit).
  std::vector<InterventionSpec> interventions;
};

struct LayerAttributionOutput {
  int64_t position = 0;
  int64_t target = -1;
  std::vector<std::string> labels;  // "embed", "pos_embed", "0_attn_out" (or "0_attn_head0", ...,
                                    // "0_attn_bias"), "0_mlp_out", ...
  std::vector<double> values;
  double bias = 0;   // kDirectLogit: the norm's bias through the unembedding
  double logit = 0;  // the model's logit (difference) at the position
};

}  // namespace lensd

#endif  // LENSD_CORE_ATTRIBUTION_TYPES_H_
