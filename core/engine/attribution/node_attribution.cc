// Node attribution over SAE features and error nodes (attribution.md §1.3-§1.6).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/attribution/attribution.h"
#include "core/engine/attribution/attribution_metric.h"
#include "core/engine/attribution/node_attribution_methods.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

using attribution_internal::Batch;
using attribution_internal::Candidate;
using attribution_internal::EncodeAt;
using attribution_internal::ExactEffects;
using attribution_internal::Flat;
using attribution_internal::IntegratedGradients;
using attribution_internal::SetBaselines;
using attribution_internal::Site;

std::string ModuleType(HookKind kind) {
  switch (kind) {
    case HookKind::kEmbed:
    case HookKind::kPosEmbed:
      return "embed";
    case HookKind::kAttnOut:
    case HookKind::kAttnZ:
    case HookKind::kAttnQ:
      return "attn";
    case HookKind::kMlpOut:
    case HookKind::kMlpPre:
    case HookKind::kMlpPreLinear:
    case HookKind::kMlpPost:
      return "mlp";
    default:
      return "resid";
  }
}

absl::Status ValidateSpec(const NodeAttributionSpec& spec, int64_t vocab) {
  const auto t = static_cast<int64_t>(spec.tokens.size());
  if (spec.baseline == AttributionBaseline::kPatch &&
      static_cast<int64_t>(spec.patch_tokens.size()) != t) {
    return absl::InvalidArgumentError(absl::StrCat(
        "patch: the patch prompt has ", spec.patch_tokens.size(), " tokens and the input ", t,
        "; a patch baseline needs the same length (positions are compared one to one)"));
  }
  const bool mean = spec.baseline == AttributionBaseline::kMean ||
                    spec.baseline == AttributionBaseline::kMeanPerPosition;
  if (mean && spec.reference.empty()) {
    return absl::InvalidArgumentError("reference: a mean baseline needs reference prompts");
  }
  if (spec.baseline == AttributionBaseline::kMeanPerPosition) {
    for (size_t i = 0; i < spec.reference.size(); ++i) {
      if (static_cast<int64_t>(spec.reference[i].size()) != t) {
        return absl::InvalidArgumentError(absl::StrCat(
            "reference[", i, "]: ", spec.reference[i].size(), " tokens and the input ", t,
            "; a per-position mean needs every reference prompt of the input's length"));
      }
    }
  }
  auto check = [&](const std::vector<int64_t>& tokens, const std::string& field) {
    for (const int64_t id : tokens) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": token id ", id, " out of range 0..", vocab - 1));
      }
    }
    return tokens.empty() ? absl::InvalidArgumentError(absl::StrCat(field, ": no tokens"))
                          : absl::OkStatus();
  };
  if (spec.baseline == AttributionBaseline::kPatch) {
    LENSD_RETURN_IF_ERROR(check(spec.patch_tokens, "patch"));
  }
  for (const auto& seq : spec.reference) LENSD_RETURN_IF_ERROR(check(seq, "reference"));
  if (spec.method == AttributionMethod::kIntegratedGradients &&
      (spec.ig_steps < 1 || spec.ig_steps > 256)) {
    return absl::InvalidArgumentError("ig_steps: must be 1..256");
  }
  for (const int64_t p : spec.excluded_positions) {
    if (p < 0 || p >= t) {
      return absl::InvalidArgumentError(
          absl::StrCat("excluded_positions: ", p, " out of range 0..", t - 1));
    }
  }
  if (spec.top_n < 0) return absl::InvalidArgumentError("top_n: must be >= 0");
  return absl::OkStatus();
}

// A run of the flat node list: one site's features or error nodes, row-major [T, width].
struct Segment {
  size_t site;
  bool error;
  int64_t begin;
  int64_t width;  // F, d, or 1 (contracted errors)
};

// Host copies [T, F] / [T, d] of a site's values.
struct Host {
  at::Tensor f, f0, fg, e, e0, eg;
};

Candidate Locate(const std::vector<Segment>& segments, int64_t t, int64_t flat, ErrorNodes errors) {
  size_t k = 0;
  while (k + 1 < segments.size() && segments[k + 1].begin <= flat) ++k;
  const Segment& g = segments[k];
  const int64_t local = flat - g.begin;
  const bool contracted = g.error && errors == ErrorNodes::kContracted;
  return {g.site, local / g.width, g.error, contracted ? -1 : local % g.width};
}

// One output row; `exact_sign` != 0 when the effect came from exact patching (the grad reported
// is then the effect over the change).
AttributionNode Row(const Site& st, const Host& h, const Candidate& c, double effect,
                    double exact_sign) {
  AttributionNode row;
  row.sae = st.site->name;
  row.hook_point = HookName(st.site->point);
  row.layer = st.site->point.layer;
  row.module_type = ModuleType(st.site->point.kind);
  row.position = c.position;
  row.error = c.error;
  row.index = c.index;
  if (!c.error) {
    row.value = h.f.accessor<float, 2>()[c.position][c.index];
    row.baseline = h.f0.accessor<float, 2>()[c.position][c.index];
    row.grad = h.fg.accessor<float, 2>()[c.position][c.index];
  } else if (c.index >= 0) {
    row.value = h.e.accessor<float, 2>()[c.position][c.index];
    row.baseline = h.e0.accessor<float, 2>()[c.position][c.index];
    row.grad = h.eg.accessor<float, 2>()[c.position][c.index];
  } else {
    const at::Tensor e = h.e[c.position];
    const double norm = e.norm().item<double>();
    row.value = static_cast<float>(norm);
    row.baseline = h.e0[c.position].norm().item<float>();
    row.grad =
        norm > 0 ? static_cast<float>((e * h.eg[c.position]).sum().item<double>() / norm) : 0.0F;
  }
  if (exact_sign != 0) {
    const double delta = static_cast<double>(row.baseline) - row.value;
    if (delta != 0 && row.index >= 0) row.grad = static_cast<float>(effect * exact_sign / delta);
  }
  row.effect = static_cast<float>(effect);
  return row;
}

}  // namespace

absl::StatusOr<NodeAttributionOutput> AttributeNodes(
    const CausalLm& model, const std::vector<SaeSite>& sae_sites, const NodeAttributionSpec& spec,
    const std::function<absl::Status()>& keep_going, const Interventions* edits) {
  const auto go_on = [&keep_going]() { return keep_going ? keep_going() : absl::OkStatus(); };
  LENSD_RETURN_IF_ERROR(ValidateSpec(spec, model.config().vocab_size));
  LENSD_ASSIGN_OR_RETURN(ResolvedMetric metric,
                         ResolveMetric(spec.metric, spec.tokens, model.config().vocab_size));
  return CatchTorch("node attribution", [&]() -> absl::StatusOr<NodeAttributionOutput> {
    const auto t = static_cast<int64_t>(spec.tokens.size());
    at::Tensor keep = at::ones({t}, at::kBool);
    for (const int64_t p : spec.excluded_positions) keep[p] = false;
    std::vector<Site> sites(sae_sites.size());
    // The clean pass: one forward and backward of the unmodified model.
    NodeAttributionOutput out;
    {
      Hooks hooks(model.config().num_layers);
      if (edits != nullptr) edits->Install(hooks);
      for (const SaeSite& s : sae_sites) {
        hooks.Capture(s.point);
        hooks.CaptureGrad(s.point);
      }
      LENSD_ASSIGN_OR_RETURN(const ForwardResult result,
                             model.Forward(Batch(spec.tokens, 1), &hooks));
      ResolveTarget(metric, result.logits.detach());
      const at::Tensor m = MetricValues(result.logits, metric);
      m.sum().backward();
      out.metric = m[0].item<double>();
      c10::NoGradGuard no_grad;
      for (size_t i = 0; i < sites.size(); ++i) {
        Site& s = sites[i];
        s.site = &sae_sites[i];
        const at::Tensor value = hooks.Captured(s.site->point).detach();
        s.shape = value.sizes().vec();
        EncodeAt(s, value, keep);
        s.grad = Flat(hooks.Grad(s.site->point))[0].to(at::kFloat);
        s.feature_grad = s.site->sae->FeatureGrad(s.grad, s.code).to(at::kFloat);
        s.error_grad = s.grad;
      }
    }
    // The loss's target is the next token (of the only position, when there is one).
    out.target = metric.kind == MetricKind::kLoss
                     ? (metric.labels.size() == 1 ? metric.labels[0] : -1)
                     : metric.target;
    c10::NoGradGuard no_grad;
    LENSD_RETURN_IF_ERROR(SetBaselines(model, sites, spec, keep, edits));
    if (spec.baseline == AttributionBaseline::kPatch) {
      c10::InferenceMode inference;
      Hooks hooks(model.config().num_layers);
      if (edits != nullptr) edits->Install(hooks);
      LENSD_ASSIGN_OR_RETURN(const ForwardResult patched,
                             model.Forward(Batch(spec.patch_tokens, 1), &hooks));
      out.patched_metric = MetricValues(patched.logits, metric)[0].item<double>();
      out.total_effect = out.patched_metric - out.metric;
    }
    if (spec.method == AttributionMethod::kIntegratedGradients) {
      for (Site& s : sites) {
        c10::AutoGradMode grad(true);
        LENSD_RETURN_IF_ERROR(go_on());
        LENSD_RETURN_IF_ERROR(
            IntegratedGradients(model, s, spec.tokens, metric, spec.ig_steps, edits));
      }
    }
    // Every node whose baseline differs from its clean value, as segments of one flat list:
    // per site its features [T, F], then its error nodes ([T] contracted or [T, d]).
    std::vector<Segment> segments;
    std::vector<at::Tensor> ie_parts;
    std::vector<at::Tensor> changed_parts;
    int64_t offset = 0;
    for (size_t i = 0; i < sites.size(); ++i) {
      Site& s = sites[i];
      const at::Tensor df = (s.f0 - s.code.features).to(at::kFloat).expand_as(s.feature_grad);
      const at::Tensor de = (s.e0 - s.e).to(at::kFloat).expand_as(s.error_grad);
      at::Tensor error_ie = de * s.error_grad;
      at::Tensor error_changed = de.ne(0);
      if (spec.error_nodes == ErrorNodes::kContracted) {
        error_ie = error_ie.sum(1);
        error_changed = error_changed.any(1);
      }
      for (const bool error : {false, true}) {
        const at::Tensor ie = error ? error_ie : df * s.feature_grad;
        const at::Tensor changed = error ? error_changed : df.ne(0);
        segments.push_back({i, error, offset, ie.dim() == 2 ? ie.size(1) : 1});
        offset += ie.numel();
        ie_parts.push_back(ie.flatten().to(at::kDouble).cpu());
        changed_parts.push_back(changed.flatten().cpu());
      }
    }
    at::Tensor ie_all = at::cat(ie_parts);
    const at::Tensor changed_all = at::cat(changed_parts);
    out.nodes_considered = changed_all.sum().item<int64_t>();
    if (spec.method == AttributionMethod::kExact) {
      if (out.nodes_considered > kMaxExactNodes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "method: exact patching would run ", out.nodes_considered, " forward passes (limit ",
            kMaxExactNodes, "); use attribution patching, fewer SAEs or a shorter prompt"));
      }
      const at::Tensor flat = at::nonzero(changed_all).flatten();
      std::vector<Candidate> nodes;
      nodes.reserve(static_cast<size_t>(flat.numel()));
      for (int64_t j = 0; j < flat.numel(); ++j) {
        nodes.push_back(Locate(segments, t, flat[j].item<int64_t>(), spec.error_nodes));
      }
      LENSD_ASSIGN_OR_RETURN(
          const std::vector<double> exact,
          ExactEffects(model, sites, nodes, spec.tokens, metric, out.metric, go_on, edits));
      ie_all.index_put_({flat}, at::tensor(exact, at::kDouble));
    }
    const double sign = spec.sign == SignConvention::kPatchEffect ? 1.0 : -1.0;
    const at::Tensor effect_all = ie_all * sign * changed_all;
    out.sum_of_effects = effect_all.sum().item<double>();
    // The kept nodes: nonzero, above min_abs_effect, the top_n largest |effect| (ties in the
    // order of the flat list: site, features before errors, position, index).
    const at::Tensor magnitude = effect_all.abs().to(at::kFloat);
    at::Tensor kept_nodes = changed_all & magnitude.gt(0) & magnitude.gt(spec.min_abs_effect);
    const int64_t kept = kept_nodes.sum().item<int64_t>();
    if (spec.top_n > 0 && kept > spec.top_n) {
      const double kth =
          std::get<0>(at::where(kept_nodes, magnitude, at::zeros_like(magnitude)).topk(spec.top_n))
              .min()
              .item<double>();
      kept_nodes = kept_nodes & magnitude.ge(kth);
    }
    const at::Tensor flat = at::nonzero(kept_nodes).flatten();
    const at::Tensor order =
        std::get<1>(at::sort(magnitude.index({flat}), /*stable=*/true, 0, /*descending=*/true));
    const at::Tensor chosen = flat.index({order});
    const int64_t count = spec.top_n > 0 ? std::min(spec.top_n, chosen.numel()) : chosen.numel();
    // Host copies [T, F] / [T, d] of each site's values for the rows.
    std::vector<Host> host;
    host.reserve(sites.size());
    for (const Site& st : sites) {
      auto cpu = [](const at::Tensor& x, const at::Tensor& like) {
        return x.expand_as(like).to(at::kFloat).cpu().contiguous();
      };
      host.push_back({cpu(st.code.features, st.code.features), cpu(st.f0, st.code.features),
                      cpu(st.feature_grad, st.code.features), cpu(st.e, st.e), cpu(st.e0, st.e),
                      cpu(st.error_grad, st.e)});
    }
    const auto effects = effect_all.accessor<double, 1>();
    const auto picks = chosen.accessor<int64_t, 1>();
    out.nodes.reserve(static_cast<size_t>(count));
    for (int64_t k = 0; k < count; ++k) {
      const Candidate c = Locate(segments, t, picks[k], spec.error_nodes);
      out.nodes.push_back(Row(sites[c.site], host[c.site], c, effects[picks[k]],
                              spec.method == AttributionMethod::kExact ? sign : 0.0));
    }
    return out;
  });
}

}  // namespace lensd::engine
