#include "server/attribution_convert.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/convert.h"

namespace lensd::server {
namespace {

absl::StatusOr<MetricKind> ToMetricKind(int kind) {
  switch (kind) {
    case v1::METRIC_KIND_LOSS:
      return MetricKind::kLoss;
    case v1::METRIC_KIND_LOGIT:
      return MetricKind::kLogit;
    case v1::METRIC_KIND_LOG_PROB:
      return MetricKind::kLogProb;
    case v1::METRIC_KIND_PROB:
      return MetricKind::kProb;
    case v1::METRIC_KIND_LOGIT_DIFF:
      return MetricKind::kLogitDiff;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("metric.kind: ", kind, " is not a MetricKind (see types.proto)"));
  }
}

void FillTokens(const LoadedModel& model, const std::vector<int64_t>& tokens,
                google::protobuf::RepeatedPtrField<v1::Token>* out) {
  for (const int64_t id : tokens) FillToken(model, id, out->Add());
}

}  // namespace

absl::StatusOr<MetricSpec> ToMetricSpec(const v1::Metric& metric) {
  MetricSpec spec;
  LENSD_ASSIGN_OR_RETURN(spec.kind, ToMetricKind(metric.kind()));
  spec.positions.assign(metric.positions().begin(), metric.positions().end());
  if (metric.has_target()) spec.target = metric.target();
  if (metric.has_foil()) spec.foil = metric.foil();
  if ((metric.has_target() && metric.target() < 0) || (metric.has_foil() && metric.foil() < 0)) {
    return absl::InvalidArgumentError("metric.target/foil: token ids are >= 0");
  }
  return spec;
}

std::vector<int64_t> ExcludedPositions(const LoadedModel& model, const std::vector<int64_t>& tokens,
                                       const std::vector<std::string>& saes,
                                       std::optional<bool> exclude) {
  if (!exclude.has_value()) {
    bool any = false;
    for (const SaeDescription& sae : model.model->Saes()) {
      const bool named =
          saes.empty() || std::find(saes.begin(), saes.end(), sae.name) != saes.end();
      any = any || (named && sae.exclude_special_tokens);
    }
    exclude = any;
  }
  std::vector<int64_t> out;
  if (!*exclude || model.tokenizer == nullptr) return out;
  for (size_t p = 0; p < tokens.size(); ++p) {
    if (model.tokenizer->IsSpecial(static_cast<int32_t>(tokens[p]))) {
      out.push_back(static_cast<int64_t>(p));
    }
  }
  return out;
}

absl::StatusOr<EncodeSaeSpec> ToEncodeSaeSpec(const v1::EncodeSaeRequest& request,
                                              std::vector<int64_t> tokens) {
  EncodeSaeSpec spec;
  spec.tokens = std::move(tokens);
  spec.saes.assign(request.saes().begin(), request.saes().end());
  if (request.has_top_k()) spec.top_k = request.top_k();
  if (spec.top_k < 0) return absl::InvalidArgumentError("top_k: must be >= 0 (0: every feature)");
  spec.threshold = request.threshold();
  if (!std::isfinite(spec.threshold)) return absl::InvalidArgumentError("threshold: not finite");
  return spec;
}

void FillEncodeSaeResponse(const std::vector<SaeEncoding>& encodings, const LoadedModel& model,
                           const std::vector<int64_t>& tokens, v1::EncodeSaeResponse* response) {
  FillTokens(model, tokens, response->mutable_tokens());
  for (const SaeEncoding& e : encodings) {
    v1::SaeFeatures* out = response->add_saes();
    out->set_sae(e.sae);
    out->set_hook_point(e.hook_point);
    out->mutable_offsets()->Assign(e.offsets.begin(), e.offsets.end());
    out->mutable_indices()->Assign(e.indices.begin(), e.indices.end());
    out->mutable_values()->Assign(e.values.begin(), e.values.end());
    out->mutable_l0()->Assign(e.l0.begin(), e.l0.end());
    out->mutable_error_norm()->Assign(e.error_norm.begin(), e.error_norm.end());
    out->mutable_fvu()->Assign(e.fvu.begin(), e.fvu.end());
    out->set_fvu_total(e.fvu_total);
  }
}

absl::StatusOr<NodeAttributionSpec> ToNodeAttributionSpec(
    const v1::NodeAttributionRequest& request, std::vector<int64_t> tokens,
    std::vector<int64_t> patch, std::vector<std::vector<int64_t>> reference) {
  NodeAttributionSpec spec;
  spec.tokens = std::move(tokens);
  spec.saes.assign(request.saes().begin(), request.saes().end());
  LENSD_ASSIGN_OR_RETURN(spec.metric, ToMetricSpec(request.metric()));
  switch (request.baseline()) {
    case v1::BASELINE_ZERO:
      spec.baseline = AttributionBaseline::kZero;
      break;
    case v1::BASELINE_MEAN:
      spec.baseline = AttributionBaseline::kMean;
      break;
    case v1::BASELINE_PATCH:
      spec.baseline = AttributionBaseline::kPatch;
      break;
    case v1::BASELINE_MEAN_PER_POSITION:
      spec.baseline = AttributionBaseline::kMeanPerPosition;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("baseline: ", request.baseline(), " is not a Baseline"));
  }
  if (spec.baseline != AttributionBaseline::kPatch && request.has_patch()) {
    return absl::InvalidArgumentError("patch: given without baseline BASELINE_PATCH");
  }
  if (spec.baseline != AttributionBaseline::kMean &&
      spec.baseline != AttributionBaseline::kMeanPerPosition && request.reference_size() > 0) {
    return absl::InvalidArgumentError(
        "reference: given without baseline BASELINE_MEAN or BASELINE_MEAN_PER_POSITION");
  }
  spec.patch_tokens = std::move(patch);
  spec.reference = std::move(reference);
  switch (request.method()) {
    case v1::METHOD_ATTRIBUTION_PATCHING:
      spec.method = AttributionMethod::kAttributionPatching;
      break;
    case v1::METHOD_INTEGRATED_GRADIENTS:
      spec.method = AttributionMethod::kIntegratedGradients;
      break;
    case v1::METHOD_EXACT:
      spec.method = AttributionMethod::kExact;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("method: ", request.method(), " is not a Method"));
  }
  if (request.has_ig_steps()) spec.ig_steps = request.ig_steps();
  if (request.error_nodes() != v1::ERROR_NODES_CONTRACTED &&
      request.error_nodes() != v1::ERROR_NODES_PER_DIMENSION) {
    return absl::InvalidArgumentError(
        absl::StrCat("error_nodes: ", request.error_nodes(), " is not an ErrorNodes"));
  }
  spec.error_nodes = request.error_nodes() == v1::ERROR_NODES_CONTRACTED
                         ? ErrorNodes::kContracted
                         : ErrorNodes::kPerDimension;
  if (request.sign_convention() != v1::SIGN_CONVENTION_PATCH_EFFECT &&
      request.sign_convention() != v1::SIGN_CONVENTION_TOKEN_TRACE) {
    return absl::InvalidArgumentError(
        absl::StrCat("sign_convention: ", request.sign_convention(), " is not a SignConvention"));
  }
  spec.sign = request.sign_convention() == v1::SIGN_CONVENTION_PATCH_EFFECT
                  ? SignConvention::kPatchEffect
                  : SignConvention::kTokenTrace;
  if (request.top_n() < 0) return absl::InvalidArgumentError("top_n: must be >= 0 (0: all)");
  spec.top_n =
      request.top_n() == 0 ? kMaxAttributionNodes : std::min(request.top_n(), kMaxAttributionNodes);
  spec.min_abs_effect = request.min_abs_effect();
  if (!(spec.min_abs_effect >= 0) || !std::isfinite(spec.min_abs_effect)) {
    return absl::InvalidArgumentError("min_abs_effect: must be a finite number >= 0");
  }
  return spec;
}

void FillNodeAttributionResponse(const NodeAttributionOutput& output, const LoadedModel& model,
                                 const std::vector<int64_t>& tokens,
                                 v1::NodeAttributionResponse* response) {
  FillTokens(model, tokens, response->mutable_tokens());
  if (output.target >= 0) FillToken(model, output.target, response->mutable_target());
  response->set_metric(output.metric);
  if (!std::isnan(output.patched_metric)) response->set_patched_metric(output.patched_metric);
  if (!std::isnan(output.total_effect)) response->set_total_effect(output.total_effect);
  response->set_sum_of_effects(output.sum_of_effects);
  response->set_nodes_considered(output.nodes_considered);
  std::vector<std::string> texts(tokens.size());
  for (size_t p = 0; p < tokens.size(); ++p) texts[p] = TokenText(model, tokens[p]);
  response->mutable_nodes()->Reserve(static_cast<int>(output.nodes.size()));
  for (const AttributionNode& n : output.nodes) {
    v1::AttributionNode* out = response->add_nodes();
    out->set_sae(n.sae);
    out->set_module_name(n.hook_point);
    out->set_layer(n.layer);
    out->set_module_type(n.module_type);
    out->set_token_idx(n.position);
    out->set_token_str(texts[static_cast<size_t>(n.position)]);
    out->set_act_type(n.error ? "error" : "feature");
    out->set_feature(n.index);
    out->set_value(n.value);
    out->set_baseline(n.baseline);
    out->set_grad(n.grad);
    out->set_effect(n.effect);
    out->set_abs_effect(std::abs(n.effect));
  }
}

absl::StatusOr<LayerAttributionSpec> ToLayerAttributionSpec(
    const v1::LayerAttributionRequest& request, std::vector<int64_t> tokens) {
  LayerAttributionSpec spec;
  spec.tokens = std::move(tokens);
  if (request.has_position()) {
    spec.position = request.position();
    if (spec.position < 0) return absl::InvalidArgumentError("position: must be >= 0");
  }
  if (request.has_target()) spec.target = request.target();
  if (request.has_foil()) spec.foil = request.foil();
  if ((request.has_target() && spec.target < 0) || (request.has_foil() && spec.foil < 0)) {
    return absl::InvalidArgumentError("target/foil: token ids are >= 0");
  }
  spec.per_head = request.per_head();
  if (spec.per_head && request.mode() != v1::LAYER_ATTRIBUTION_MODE_DIRECT_LOGIT) {
    return absl::InvalidArgumentError("per_head: only with LAYER_ATTRIBUTION_MODE_DIRECT_LOGIT");
  }
  switch (request.mode()) {
    case v1::LAYER_ATTRIBUTION_MODE_DIRECT_LOGIT:
      spec.mode = LayerAttributionMode::kDirectLogit;
      break;
    case v1::LAYER_ATTRIBUTION_MODE_LOGIT_LENS:
      spec.mode = LayerAttributionMode::kLogitLens;
      break;
    case v1::LAYER_ATTRIBUTION_MODE_LOGIT_LENS_FROZEN:
      spec.mode = LayerAttributionMode::kLogitLensFrozen;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("mode: ", request.mode(), " is not a LayerAttributionMode"));
  }
  return spec;
}

void FillLayerAttributionResponse(const LayerAttributionOutput& output, const LoadedModel& model,
                                  const std::vector<int64_t>& tokens,
                                  v1::LayerAttributionResponse* response) {
  FillTokens(model, tokens, response->mutable_tokens());
  response->set_position(output.position);
  FillToken(model, output.target, response->mutable_target());
  for (const std::string& label : output.labels) response->add_labels(label);
  response->mutable_values()->Assign(output.values.begin(), output.values.end());
  response->set_bias(output.bias);
  response->set_logit(output.logit);
}

void FillSae(const SaeDescription& sae, v1::SaeInfo* out) {
  out->set_name(sae.name);
  out->set_format(sae.format);
  out->set_architecture(sae.architecture);
  out->set_hook_point(sae.hook_point);
  out->set_d_in(sae.d_in);
  out->set_d_sae(sae.d_sae);
  out->set_k(sae.k);
  out->set_dtype(sae.dtype);
  out->set_memory_bytes(sae.bytes);
  out->set_normalize_activations(sae.normalize_activations);
  out->set_prepend_bos(sae.prepend_bos);
  out->set_exclude_special_tokens(sae.exclude_special_tokens);
  out->set_model_name(sae.model_name);
  out->set_neuronpedia_id(sae.neuronpedia_id);
}

}  // namespace lensd::server
