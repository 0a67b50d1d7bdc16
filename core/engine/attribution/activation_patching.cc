#include "core/engine/attribution/activation_patching.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/engine/attribution/attribution_metric.h"
#include "core/engine/model/hooks.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

bool PerHead(PatchingSite site) {
  return site == PatchingSite::kHeadZ || site == PatchingSite::kHeadQ ||
         site == PatchingSite::kHeadK || site == PatchingSite::kHeadV ||
         site == PatchingSite::kHeadPattern;
}

HookKind KindOf(PatchingSite site) {
  switch (site) {
    case PatchingSite::kResidPre:
      return HookKind::kResidPre;
    case PatchingSite::kResidMid:
      return HookKind::kResidMid;
    case PatchingSite::kResidPost:
      return HookKind::kResidPost;
    case PatchingSite::kAttnOut:
      return HookKind::kAttnOut;
    case PatchingSite::kMlpOut:
      return HookKind::kMlpOut;
    case PatchingSite::kHeadZ:
      return HookKind::kAttnZ;
    case PatchingSite::kHeadQ:
      return HookKind::kAttnQ;
    case PatchingSite::kHeadK:
      return HookKind::kAttnK;
    case PatchingSite::kHeadV:
      return HookKind::kAttnV;
    case PatchingSite::kHeadPattern:
      return HookKind::kAttnPattern;
  }
  return HookKind::kResidPre;
}

int64_t HeadsOf(PatchingSite site, const ModelConfig& c) {
  if (!PerHead(site)) return 1;
  const bool kv = site == PatchingSite::kHeadK || site == PatchingSite::kHeadV;
  return kv && c.num_kv_heads > 0 ? c.num_kv_heads : c.num_heads;
}

absl::Status CheckIndices(const std::vector<int64_t>& values, int64_t end, const char* field,
                          const char* what) {
  std::set<int64_t> seen;
  for (const int64_t v : values) {
    if (v < 0 || v >= end) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", what, " ", v, " out of range 0..", end - 1));
    }
    if (!seen.insert(v).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", what, " ", v, " given twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status Validate(const ModelConfig& c, const ActivationPatchingSpec& spec) {
  if (spec.clean.empty()) return absl::InvalidArgumentError("clean: no tokens");
  if (spec.corrupted.size() != spec.clean.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "corrupted: ", spec.corrupted.size(), " tokens where clean has ", spec.clean.size(),
        "; positions are patched one to one, so give inputs of one length"));
  }
  if (spec.sweeps.empty()) return absl::InvalidArgumentError("sweeps: give one or more");
  for (const PatchingSweep& sweep : spec.sweeps) {
    if (sweep.site == PatchingSite::kResidMid && c.parallel_residual) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sweeps: resid_mid does not exist in ", c.model_type, " (parallel attention and MLP)"));
    }
  }
  LENSD_RETURN_IF_ERROR(CheckIndices(spec.layers, c.num_layers, "layers", "layer"));
  return CheckIndices(spec.positions, static_cast<int64_t>(spec.clean.size()), "positions",
                      "position");
}

// The cells of one layer of a sweep: the position (-1: all) and head (-1: none) each row patches.
struct Cell {
  int64_t position;
  int64_t head;
};

// A [rows, ...] mask that broadcasts against the point's value: true where a row patches.
at::Tensor CellMask(const std::vector<Cell>& cells, PatchingSite site, int64_t t, int64_t heads,
                    const at::Device& device) {
  const auto n = static_cast<int64_t>(cells.size());
  at::Tensor pos = at::zeros({n, t}, at::kBool);
  at::Tensor head = at::zeros({n, std::max<int64_t>(heads, 1)}, at::kBool);
  for (int64_t i = 0; i < n; ++i) {
    const Cell& cell = cells[static_cast<size_t>(i)];
    if (cell.position < 0) {
      pos[i].fill_(true);
    } else {
      pos[i][cell.position] = true;
    }
    if (cell.head >= 0) head[i][cell.head] = true;
  }
  pos = pos.to(device);
  head = head.to(device);
  if (!PerHead(site)) return pos.view({n, t, 1});
  if (site == PatchingSite::kHeadPattern) {  // [rows, heads, query, key]
    return head.view({n, heads, 1, 1}) & pos.view({n, 1, t, 1});
  }
  return pos.view({n, t, 1, 1}) & head.view({n, 1, heads, 1});
}

struct Sweeper {
  const CausalLm& model;
  const ActivationPatchingSpec& spec;
  const PatchingProgress& progress;
  at::Tensor target_tokens;                // [1, T] the run being patched
  std::vector<at::Tensor> target_streams;  // per layer: the stream entering it, [1, T, d]
  Hooks source;                            // the other run's values
  ResolvedMetric metric;                   // positions 0..k-1 of `metric_positions`
  at::Tensor metric_positions;
  int64_t done = 0;
  int64_t total = 0;
  ActivationPatchingOutput* out = nullptr;

  at::Tensor Metric(const at::Tensor& residual) const {
    const at::Tensor logits =
        *model.FinalNormAndUnembed(residual.index_select(1, metric_positions));
    return MetricValues(logits, metric).to(at::kFloat).cpu();
  }

  // Runs `cells` of layer `layer` as rows of one pass; returns their metrics.
  absl::StatusOr<at::Tensor> Pass(PatchingSite site, int64_t layer,
                                  const std::vector<Cell>& cells) {
    const HookPoint point{KindOf(site), layer};
    const auto n = static_cast<int64_t>(cells.size());
    const int64_t t = target_tokens.size(1);
    const at::Tensor value = source.Captured(point);
    const at::Tensor mask = CellMask(cells, site, t, HeadsOf(site, model.config()), model.device());
    Hooks hooks(model.config().num_layers);
    hooks.Edit(point, [&](const at::Tensor& x) { return at::where(mask, value, x); });
    ForwardRequest r;
    r.tokens = target_tokens.expand({n, t}).contiguous();
    r.logits = LogitsMode::kNone;
    if (layer > 0) {
      r.start_layer = layer;
      r.start_residual = target_streams[static_cast<size_t>(layer)].expand({n, t, -1}).contiguous();
    }
    LENSD_ASSIGN_OR_RETURN(const ForwardResult result, model.Forward(r, &hooks));
    ++out->forward_passes;
    return Metric(result.residual);
  }

  absl::Status Sweep(const PatchingSweep& sweep, PatchingGrid* grid) {
    const int64_t heads = PerHead(sweep.site) ? HeadsOf(sweep.site, model.config()) : 0;
    std::vector<int64_t> positions{-1};
    if (!sweep.all_positions) positions = out->positions;
    std::vector<Cell> layer_cells;
    for (const int64_t p : positions) {
      if (heads == 0) layer_cells.push_back({p, -1});
      for (int64_t h = 0; h < heads; ++h) layer_cells.push_back({p, h});
    }
    grid->sweep = sweep;
    grid->dims = {"layer"};
    grid->shape = {static_cast<int64_t>(out->layers.size())};
    if (!sweep.all_positions) {
      grid->dims.emplace_back("position");
      grid->shape.push_back(static_cast<int64_t>(positions.size()));
    }
    if (heads > 0) {
      grid->dims.emplace_back("head");
      grid->shape.push_back(heads);
    }
    const int64_t rows = std::max<int64_t>(1, kPatchingTokensPerPass / target_tokens.size(1));
    for (const int64_t layer : out->layers) {
      for (size_t first = 0; first < layer_cells.size(); first += static_cast<size_t>(rows)) {
        const size_t last = std::min(layer_cells.size(), first + static_cast<size_t>(rows));
        const std::vector<Cell> chunk(layer_cells.begin() + static_cast<ptrdiff_t>(first),
                                      layer_cells.begin() + static_cast<ptrdiff_t>(last));
        LENSD_ASSIGN_OR_RETURN(const at::Tensor values, Pass(sweep.site, layer, chunk));
        const float* v = values.data_ptr<float>();
        grid->metric.insert(grid->metric.end(), v, v + values.numel());
        done += values.numel();
        if (progress) LENSD_RETURN_IF_ERROR(progress(done, total));
      }
    }
    return absl::OkStatus();
  }
};

// One full pass of `tokens`, capturing `hooks`' points; the residual after the last block.
absl::StatusOr<at::Tensor> FullPass(const CausalLm& model, const std::vector<int64_t>& tokens,
                                    Hooks* hooks) {
  ForwardRequest r;
  r.tokens = at::tensor(tokens, at::kLong).unsqueeze(0);
  r.logits = LogitsMode::kNone;
  LENSD_ASSIGN_OR_RETURN(const ForwardResult result, model.Forward(r, hooks));
  return result.residual;
}

}  // namespace

absl::Status ValidatePatching(const CausalLm& model, const ActivationPatchingSpec& spec) {
  LENSD_RETURN_IF_ERROR(Validate(model.config(), spec));
  return ResolveMetric(spec.metric, spec.clean, model.config().vocab_size).status();
}

absl::StatusOr<ActivationPatchingOutput> PatchActivations(const CausalLm& model,
                                                          const ActivationPatchingSpec& spec,
                                                          const PatchingProgress& progress) {
  const ModelConfig& c = model.config();
  LENSD_RETURN_IF_ERROR(Validate(c, spec));
  LENSD_ASSIGN_OR_RETURN(ResolvedMetric metric,
                         ResolveMetric(spec.metric, spec.clean, c.vocab_size));
  return CatchTorch("activation patching", [&]() -> absl::StatusOr<ActivationPatchingOutput> {
    c10::InferenceMode inference;
    ActivationPatchingOutput out;
    const auto t = static_cast<int64_t>(spec.clean.size());
    for (int64_t l = 0; l < c.num_layers; ++l) {
      if (spec.layers.empty()) out.layers.push_back(l);
    }
    if (!spec.layers.empty()) out.layers = spec.layers;
    for (int64_t p = 0; p < t; ++p) {
      if (spec.positions.empty()) out.positions.push_back(p);
    }
    if (!spec.positions.empty()) out.positions = spec.positions;
    const bool denoising = spec.direction == PatchingDirection::kDenoising;
    const std::vector<int64_t>& target = denoising ? spec.corrupted : spec.clean;
    const std::vector<int64_t>& other = denoising ? spec.clean : spec.corrupted;

    Sweeper s{
        model, spec, progress, at::tensor(target, at::kLong).unsqueeze(0), {}, Hooks(c.num_layers)};
    s.out = &out;
    s.metric_positions = at::tensor(metric.positions, at::kLong).to(model.device());
    metric.positions.clear();
    for (int64_t i = 0; i < s.metric_positions.size(0); ++i) metric.positions.push_back(i);
    for (const PatchingSweep& sweep : spec.sweeps) {
      for (const int64_t l : out.layers) s.source.Capture({KindOf(sweep.site), l});
    }
    Hooks streams(c.num_layers);
    for (int64_t l = 0; l < c.num_layers; ++l) streams.Capture({HookKind::kResidPre, l});
    LENSD_ASSIGN_OR_RETURN(const at::Tensor target_residual, FullPass(model, target, &streams));
    LENSD_ASSIGN_OR_RETURN(const at::Tensor other_residual, FullPass(model, other, &s.source));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      s.target_streams.push_back(streams.Captured({HookKind::kResidPre, l}));
    }
    // The target defaults to the clean run's top-1 token at the first metric position.
    const at::Tensor clean_residual = denoising ? other_residual : target_residual;
    ResolveTarget(metric,
                  *model.FinalNormAndUnembed(clean_residual.index_select(1, s.metric_positions)));
    s.metric = metric;
    out.target = metric.target;
    out.clean_metric = s.Metric(clean_residual).item<double>();
    out.corrupted_metric = s.Metric(denoising ? target_residual : other_residual).item<double>();
    out.forward_passes = 2;
    s.total = PatchingCells(spec, c.num_layers, c.num_heads,
                            c.num_kv_heads > 0 ? c.num_kv_heads : c.num_heads);
    out.patched_runs = s.total;
    const double span = out.clean_metric - out.corrupted_metric;
    for (const PatchingSweep& sweep : spec.sweeps) {
      PatchingGrid& grid = out.grids.emplace_back();
      LENSD_RETURN_IF_ERROR(s.Sweep(sweep, &grid));
      for (const float m : grid.metric) {
        grid.normalized.push_back(static_cast<float>((m - out.corrupted_metric) / span));
      }
    }
    return out;
  });
}

}  // namespace lensd::engine
