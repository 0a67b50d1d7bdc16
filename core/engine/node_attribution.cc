// Node attribution over SAE features and error nodes (attribution.md §1.3-§1.6).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/attribution.h"
#include "core/engine/attribution_metric.h"
#include "core/engine/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

// One site's clean values and baseline, [T, d] / [T, F] (baselines may be [1, ...]).
struct Site {
  const SaeSite* site = nullptr;
  std::vector<int64_t> shape;  // the point's activation shape for one sequence, [1, T, ...]
  at::Tensor a;                // activation, SAE dtype
  at::Tensor grad;             // dm/da, float32
  SaeCode code;
  at::Tensor x_hat;
  at::Tensor e;  // a - x_hat
  at::Tensor f0;
  at::Tensor e0;
  at::Tensor feature_grad;  // dm/df (AtP) or the IG average, float32
  at::Tensor error_grad;    // dm/de
};

ForwardRequest Batch(const std::vector<int64_t>& tokens, int64_t rows) {
  ForwardRequest forward;
  forward.tokens = at::tensor(tokens, at::kLong).unsqueeze(0).expand({rows, -1}).contiguous();
  forward.logits = LogitsMode::kAll;
  return forward;
}

at::Tensor Flat(const at::Tensor& value) { return value.dim() == 4 ? value.flatten(2) : value; }

// Encodes one sequence's activation at a site with the excluded positions' features zeroed.
void EncodeAt(Site& s, const at::Tensor& activation, const at::Tensor& keep) {
  const Sae& sae = *s.site->sae;
  s.a = Flat(activation)[0].to(sae.dtype());
  s.code = sae.Encode(s.a);
  s.code.features = s.code.features * keep.to(s.a.device()).unsqueeze(1);
  s.x_hat = sae.Decode(s.code);
  s.e = s.a - s.x_hat;
}

// Activations at every site for a sequence (no gradients).
absl::StatusOr<std::vector<at::Tensor>> Capture(const CausalLm& model,
                                                const std::vector<Site>& sites,
                                                const std::vector<int64_t>& tokens) {
  c10::InferenceMode inference;
  Hooks hooks(model.config().num_layers);
  for (const Site& s : sites) hooks.Capture(s.site->point);
  LENSD_RETURN_IF_ERROR(model.Forward(Batch(tokens, 1), &hooks).status());
  std::vector<at::Tensor> out;
  out.reserve(sites.size());
  for (const Site& s : sites) out.push_back(hooks.Captured(s.site->point).clone());
  return out;
}

absl::Status SetBaselines(const CausalLm& model, std::vector<Site>& sites,
                          const NodeAttributionSpec& spec, const at::Tensor& keep) {
  if (spec.baseline == AttributionBaseline::kZero) {
    for (Site& s : sites) {
      s.f0 = at::zeros_like(s.code.features);
      s.e0 = at::zeros_like(s.e);
    }
    return absl::OkStatus();
  }
  if (spec.baseline == AttributionBaseline::kPatch) {
    LENSD_ASSIGN_OR_RETURN(const std::vector<at::Tensor> acts,
                           Capture(model, sites, spec.patch_tokens));
    for (size_t i = 0; i < sites.size(); ++i) {
      Site patched = sites[i];
      EncodeAt(patched, acts[i], keep);
      sites[i].f0 = patched.code.features;
      sites[i].e0 = patched.e;
    }
    return absl::OkStatus();
  }
  // Mean over every position of the reference sequences.
  std::vector<at::Tensor> f_sum(sites.size());
  std::vector<at::Tensor> e_sum(sites.size());
  int64_t count = 0;
  for (const std::vector<int64_t>& seq : spec.reference) {
    LENSD_ASSIGN_OR_RETURN(const std::vector<at::Tensor> acts, Capture(model, sites, seq));
    const at::Tensor all = at::ones({static_cast<int64_t>(seq.size())}, at::kBool);
    for (size_t i = 0; i < sites.size(); ++i) {
      Site ref = sites[i];
      EncodeAt(ref, acts[i], all);
      const at::Tensor f = ref.code.features.sum(0, true);
      const at::Tensor e = ref.e.sum(0, true);
      f_sum[i] = f_sum[i].defined() ? f_sum[i] + f : f;
      e_sum[i] = e_sum[i].defined() ? e_sum[i] + e : e;
    }
    count += static_cast<int64_t>(seq.size());
  }
  for (size_t i = 0; i < sites.size(); ++i) {
    sites[i].f0 = f_sum[i] / static_cast<double>(count);
    sites[i].e0 = e_sum[i] / static_cast<double>(count);
  }
  return absl::OkStatus();
}

// Integrated gradients at one site: the site's output replaced by D(f_a) + e_a for N values of a
// in one batched forward; the averaged gradients.
absl::Status IntegratedGradients(const CausalLm& model, Site& s, const std::vector<int64_t>& tokens,
                                 const ResolvedMetric& metric, int64_t steps) {
  const Sae& sae = *s.site->sae;
  const at::Tensor alpha =
      (at::arange(steps, s.a.options().dtype(at::kFloat)) / static_cast<double>(steps))
          .to(sae.dtype())
          .view({steps, 1, 1});
  const at::Tensor f = ((1 - alpha) * s.code.features + alpha * s.f0).detach().requires_grad_(true);
  const at::Tensor e = ((1 - alpha) * s.e + alpha * s.e0).detach().requires_grad_(true);
  std::vector<int64_t> shape = s.shape;
  shape[0] = steps;
  Hooks hooks(model.config().num_layers);
  hooks.Edit(s.site->point, [&](const at::Tensor& x) {
    return (sae.Decode(f, s.code) + e).view(shape).to(x.scalar_type());
  });
  hooks.CaptureGrad(s.site->point);  // runs the pass with autograd
  LENSD_ASSIGN_OR_RETURN(const ForwardResult result, model.Forward(Batch(tokens, steps), &hooks));
  MetricValues(result.logits, metric).sum().backward();
  s.feature_grad = f.grad().to(at::kFloat).mean(0);
  s.error_grad = e.grad().to(at::kFloat).mean(0);
  return absl::OkStatus();
}

struct Candidate {
  size_t site;
  int64_t position;
  bool error;
  int64_t index;  // feature, error dimension, or -1
};

// Exact patching: m with each node set to its baseline, minus m(clean), batched.
absl::StatusOr<std::vector<double>> ExactEffects(const CausalLm& model,
                                                 const std::vector<Site>& sites,
                                                 const std::vector<Candidate>& nodes,
                                                 const std::vector<int64_t>& tokens,
                                                 const ResolvedMetric& metric, double clean) {
  constexpr int64_t kChunk = 16;
  std::vector<double> out;
  out.reserve(nodes.size());
  c10::InferenceMode inference;
  for (size_t begin = 0; begin < nodes.size(); begin += kChunk) {
    const size_t end = std::min(nodes.size(), begin + kChunk);
    // Nodes of one chunk may sit at different sites: one forward per (chunk, site) group.
    std::vector<double> chunk(end - begin, 0.0);
    for (size_t si = 0; si < sites.size(); ++si) {
      const Site& s = sites[si];
      std::vector<size_t> members;
      for (size_t j = begin; j < end; ++j) {
        if (nodes[j].site == si) members.push_back(j);
      }
      if (members.empty()) continue;
      const auto n = static_cast<int64_t>(members.size());
      at::Tensor f = s.code.features.unsqueeze(0).repeat({n, 1, 1});
      at::Tensor e = s.e.unsqueeze(0).repeat({n, 1, 1});
      const at::Tensor f0 = s.f0.expand_as(s.code.features);
      const at::Tensor e0 = s.e0.expand_as(s.e);
      for (int64_t r = 0; r < n; ++r) {
        const Candidate& c = nodes[members[static_cast<size_t>(r)]];
        if (!c.error) {
          f[r][c.position][c.index] = f0[c.position][c.index];
        } else if (c.index < 0) {
          e[r][c.position] = e0[c.position];
        } else {
          e[r][c.position][c.index] = e0[c.position][c.index];
        }
      }
      std::vector<int64_t> shape = s.shape;
      shape[0] = n;
      const at::Tensor patched = (s.site->sae->Decode(f, s.code) + e).view(shape);
      Hooks hooks(model.config().num_layers);
      hooks.Overwrite(s.site->point, patched);
      LENSD_ASSIGN_OR_RETURN(const ForwardResult result, model.Forward(Batch(tokens, n), &hooks));
      const at::Tensor m = MetricValues(result.logits, metric).to(at::kDouble).cpu();
      for (int64_t r = 0; r < n; ++r)
        chunk[members[static_cast<size_t>(r)] - begin] = m[r].item<double>() - clean;
    }
    out.insert(out.end(), chunk.begin(), chunk.end());
  }
  return out;
}

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
  if (spec.baseline == AttributionBaseline::kMean && spec.reference.empty()) {
    return absl::InvalidArgumentError("reference: a mean baseline needs reference prompts");
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

}  // namespace

absl::StatusOr<NodeAttributionOutput> AttributeNodes(const CausalLm& model,
                                                     const std::vector<SaeSite>& sae_sites,
                                                     const NodeAttributionSpec& spec) {
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
      at::NoGradGuard no_grad;
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
    out.target = metric.target;
    at::NoGradGuard no_grad;
    LENSD_RETURN_IF_ERROR(SetBaselines(model, sites, spec, keep));
    if (spec.baseline == AttributionBaseline::kPatch) {
      c10::InferenceMode inference;
      LENSD_ASSIGN_OR_RETURN(const ForwardResult patched,
                             model.Forward(Batch(spec.patch_tokens, 1)));
      out.patched_metric = MetricValues(patched.logits, metric)[0].item<double>();
      out.total_effect = out.patched_metric - out.metric;
    }
    if (spec.method == AttributionMethod::kIntegratedGradients) {
      for (Site& s : sites) {
        at::AutoGradMode grad(true);
        LENSD_RETURN_IF_ERROR(IntegratedGradients(model, s, spec.tokens, metric, spec.ig_steps));
      }
    }
    // Every node whose baseline differs from its clean value.
    std::vector<Candidate> nodes;
    std::vector<at::Tensor> feature_ie(sites.size());
    std::vector<at::Tensor> error_ie(sites.size());
    for (size_t i = 0; i < sites.size(); ++i) {
      Site& s = sites[i];
      const at::Tensor df = (s.f0 - s.code.features).to(at::kFloat).expand_as(s.feature_grad);
      const at::Tensor de = (s.e0 - s.e).to(at::kFloat).expand_as(s.error_grad);
      feature_ie[i] = (df * s.feature_grad).cpu();
      error_ie[i] = (de * s.error_grad).cpu();
      const at::Tensor changed = at::nonzero(df.ne(0)).cpu();
      for (int64_t r = 0; r < changed.size(0); ++r) {
        nodes.push_back({i, changed[r][0].item<int64_t>(), false, changed[r][1].item<int64_t>()});
      }
      const at::Tensor changed_e = de.ne(0).cpu();
      for (int64_t p = 0; p < t; ++p) {
        if (spec.error_nodes == ErrorNodes::kContracted) {
          if (changed_e[p].any().item<bool>()) nodes.push_back({i, p, true, -1});
          continue;
        }
        const at::Tensor dims = at::nonzero(changed_e[p]).flatten();
        for (int64_t j = 0; j < dims.numel(); ++j)
          nodes.push_back({i, p, true, dims[j].item<int64_t>()});
      }
    }
    std::vector<double> exact;
    if (spec.method == AttributionMethod::kExact) {
      if (static_cast<int64_t>(nodes.size()) > kMaxExactNodes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "method: exact patching would run ", nodes.size(), " forward passes (limit ",
            kMaxExactNodes, "); use attribution patching, fewer SAEs or a shorter prompt"));
      }
      LENSD_ASSIGN_OR_RETURN(exact,
                             ExactEffects(model, sites, nodes, spec.tokens, metric, out.metric));
    }
    const double sign = spec.sign == SignConvention::kPatchEffect ? 1.0 : -1.0;
    out.nodes_considered = static_cast<int64_t>(nodes.size());
    // Host copies [T, F] / [T, d] of each site's values for the rows.
    struct Host {
      at::Tensor f, f0, fg, fie, e, e0, eg, eie;
    };
    std::vector<Host> host;
    host.reserve(sites.size());
    for (size_t i = 0; i < sites.size(); ++i) {
      const Site& st = sites[i];
      auto cpu = [](const at::Tensor& x, const at::Tensor& like) {
        return x.expand_as(like).to(at::kFloat).cpu().contiguous();
      };
      host.push_back({cpu(st.code.features, st.code.features), cpu(st.f0, st.code.features),
                      cpu(st.feature_grad, st.code.features), feature_ie[i].contiguous(),
                      cpu(st.e, st.e), cpu(st.e0, st.e), cpu(st.error_grad, st.e),
                      error_ie[i].contiguous()});
    }
    std::vector<AttributionNode> rows;
    for (size_t n = 0; n < nodes.size(); ++n) {
      const Candidate& c = nodes[n];
      const Site& st = sites[c.site];
      const Host& h = host[c.site];
      AttributionNode row;
      row.sae = st.site->name;
      row.hook_point = HookName(st.site->point);
      row.layer = st.site->point.layer;
      row.module_type = ModuleType(st.site->point.kind);
      row.position = c.position;
      row.error = c.error;
      row.index = c.index;
      double ie = 0;
      if (!c.error) {
        row.value = h.f.accessor<float, 2>()[c.position][c.index];
        row.baseline = h.f0.accessor<float, 2>()[c.position][c.index];
        row.grad = h.fg.accessor<float, 2>()[c.position][c.index];
        ie = h.fie.accessor<float, 2>()[c.position][c.index];
      } else if (c.index >= 0) {
        row.value = h.e.accessor<float, 2>()[c.position][c.index];
        row.baseline = h.e0.accessor<float, 2>()[c.position][c.index];
        row.grad = h.eg.accessor<float, 2>()[c.position][c.index];
        ie = h.eie.accessor<float, 2>()[c.position][c.index];
      } else {
        const at::Tensor e = h.e[c.position];
        const double norm = e.norm().item<double>();
        row.value = static_cast<float>(norm);
        row.baseline = h.e0[c.position].norm().item<float>();
        ie = h.eie[c.position].sum().item<double>();
        row.grad = norm > 0 ? static_cast<float>((e * h.eg[c.position]).sum().item<double>() / norm)
                            : 0.0F;
      }
      if (!exact.empty()) {
        ie = exact[n];
        const double delta = static_cast<double>(row.baseline) - row.value;
        if (delta != 0 && row.index >= 0) row.grad = static_cast<float>(ie / delta);
      }
      row.effect = static_cast<float>(sign * ie);
      out.sum_of_effects += sign * ie;
      if (row.effect == 0 || std::abs(row.effect) <= spec.min_abs_effect) continue;
      rows.push_back(std::move(row));
    }
    // Largest |effect| first; ties in the order the nodes were found (site, position, index).
    std::vector<size_t> order(rows.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const float ea = std::abs(rows[a].effect);
      const float eb = std::abs(rows[b].effect);
      return ea != eb ? ea > eb : a < b;
    });
    if (spec.top_n > 0 && static_cast<int64_t>(order.size()) > spec.top_n) order.resize(spec.top_n);
    out.nodes.reserve(order.size());
    for (const size_t k : order) out.nodes.push_back(std::move(rows[k]));
    return out;
  });
}

}  // namespace lensd::engine
