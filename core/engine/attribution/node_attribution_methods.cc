#include "core/engine/attribution/node_attribution_methods.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "core/status_macros.h"

namespace lensd::engine::attribution_internal {
namespace {

// Activations at every site for a sequence (no gradients).
absl::StatusOr<std::vector<at::Tensor>> Capture(const CausalLm& model,
                                                const std::vector<Site>& sites,
                                                const std::vector<int64_t>& tokens,
                                                const Interventions* edits) {
  std::vector<HookPoint> points;
  points.reserve(sites.size());
  for (const Site& s : sites) points.push_back(s.site->point);
  return CaptureHookPoints(model, points, Batch(tokens, 1).tokens, edits);
}

}  // namespace

ForwardRequest Batch(const std::vector<int64_t>& tokens, int64_t rows) {
  ForwardRequest forward;
  forward.tokens = at::tensor(tokens, at::kLong).unsqueeze(0).expand({rows, -1}).contiguous();
  forward.logits = LogitsMode::kAll;
  return forward;
}

at::Tensor Flat(const at::Tensor& value) { return value.dim() == 4 ? value.flatten(2) : value; }

void EncodeAt(Site& s, const at::Tensor& activation, const at::Tensor& keep) {
  const Sae& sae = *s.site->sae;
  s.a = Flat(activation)[0].to(sae.dtype());
  s.code = sae.Encode(s.a);
  s.code.features = s.code.features * keep.to(s.a.device()).unsqueeze(1);
  s.x_hat = sae.Decode(s.code);
  s.e = s.a - s.x_hat;
}

absl::Status SetBaselines(const CausalLm& model, std::vector<Site>& sites,
                          const NodeAttributionSpec& spec, const at::Tensor& keep,
                          const Interventions* edits) {
  if (spec.baseline == AttributionBaseline::kZero) {
    for (Site& s : sites) {
      s.f0 = at::zeros_like(s.code.features);
      s.e0 = at::zeros_like(s.e);
    }
    return absl::OkStatus();
  }
  if (spec.baseline == AttributionBaseline::kPatch) {
    LENSD_ASSIGN_OR_RETURN(const std::vector<at::Tensor> acts,
                           Capture(model, sites, spec.patch_tokens, edits));
    for (size_t i = 0; i < sites.size(); ++i) {
      Site patched = sites[i];
      EncodeAt(patched, acts[i], keep);
      sites[i].f0 = patched.code.features;
      sites[i].e0 = patched.e;
    }
    return absl::OkStatus();
  }
  // kMean: the mean over every position of the reference sequences ([1, ...]); kMeanPerPosition:
  // the mean over the sequences at each position ([T, ...], SFC's mean ablation over a batch).
  const bool per_position = spec.baseline == AttributionBaseline::kMeanPerPosition;
  std::vector<at::Tensor> f_sum(sites.size());
  std::vector<at::Tensor> e_sum(sites.size());
  int64_t count = 0;
  for (const std::vector<int64_t>& seq : spec.reference) {
    LENSD_ASSIGN_OR_RETURN(const std::vector<at::Tensor> acts, Capture(model, sites, seq, edits));
    const at::Tensor all = at::ones({static_cast<int64_t>(seq.size())}, at::kBool);
    for (size_t i = 0; i < sites.size(); ++i) {
      Site ref = sites[i];
      EncodeAt(ref, acts[i], per_position ? keep : all);
      const at::Tensor f = per_position ? ref.code.features : ref.code.features.sum(0, true);
      const at::Tensor e = per_position ? ref.e : ref.e.sum(0, true);
      f_sum[i] = f_sum[i].defined() ? f_sum[i] + f : f;
      e_sum[i] = e_sum[i].defined() ? e_sum[i] + e : e;
    }
    count += per_position ? 1 : static_cast<int64_t>(seq.size());
  }
  for (size_t i = 0; i < sites.size(); ++i) {
    sites[i].f0 = f_sum[i] / static_cast<double>(count);
    sites[i].e0 = e_sum[i] / static_cast<double>(count);
  }
  return absl::OkStatus();
}

absl::Status IntegratedGradients(const CausalLm& model, Site& s, const std::vector<int64_t>& tokens,
                                 const ResolvedMetric& metric, int64_t steps,
                                 const Interventions* edits) {
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
  if (edits != nullptr) edits->Install(hooks);
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

absl::StatusOr<std::vector<double>> ExactEffects(
    const CausalLm& model, const std::vector<Site>& sites, const std::vector<Candidate>& nodes,
    const std::vector<int64_t>& tokens, const ResolvedMetric& metric, double clean,
    const std::function<absl::Status()>& keep_going, const Interventions* edits) {
  constexpr int64_t kChunk = 16;
  std::vector<double> out;
  out.reserve(nodes.size());
  c10::InferenceMode inference;
  for (size_t begin = 0; begin < nodes.size(); begin += kChunk) {
    LENSD_RETURN_IF_ERROR(keep_going());
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
      if (edits != nullptr) edits->Install(hooks);
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

}  // namespace lensd::engine::attribution_internal
