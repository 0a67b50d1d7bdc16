#include "server/patching_convert.h"

#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/attribution_convert.h"
#include "server/convert.h"

namespace lensd::server {
namespace {

constexpr int kMaxSweeps = 16;

// Key/value heads, from the widths of blocks.0.attn.hook_q and hook_k.
int64_t KvHeads(const ServedModelInfo& info) {
  int64_t q = 0;
  int64_t k = 0;
  for (size_t i = 0; i < info.hook_points.size(); ++i) {
    if (info.hook_points[i] == "blocks.0.attn.hook_q") q = info.hook_widths[i];
    if (info.hook_points[i] == "blocks.0.attn.hook_k") k = info.hook_widths[i];
  }
  if (q == 0 || k == 0) return info.num_heads;
  return k / (q / info.num_heads);
}

std::string GridName(const PatchingSweep& sweep) {
  return absl::StrCat(PatchingSiteName(sweep.site), sweep.all_positions ? "_all_pos" : "");
}

}  // namespace

absl::StatusOr<ActivationPatchingSpec> ToPatchingSpec(const v1::ActivationPatchingRequest& r,
                                                      std::vector<int64_t> clean,
                                                      std::vector<int64_t> corrupted,
                                                      const ServedModelInfo& info,
                                                      const Limits& limits) {
  ActivationPatchingSpec spec;
  spec.clean = std::move(clean);
  spec.corrupted = std::move(corrupted);
  LENSD_ASSIGN_OR_RETURN(spec.metric, ToMetricSpec(r.metric()));
  if (!v1::PatchingDirection_IsValid(r.direction())) {
    return absl::InvalidArgumentError(absl::StrCat("direction: unknown value ", r.direction()));
  }
  spec.direction = static_cast<PatchingDirection>(r.direction());
  if (r.sweeps().empty() || r.sweeps_size() > kMaxSweeps) {
    return absl::InvalidArgumentError(
        absl::StrCat("sweeps: give 1..", kMaxSweeps, " (site, all_positions) pairs"));
  }
  std::set<std::pair<int, bool>> seen;
  for (int i = 0; i < r.sweeps_size(); ++i) {
    const v1::PatchingSweep& s = r.sweeps(i);
    if (!v1::PatchingSite_IsValid(s.site())) {
      return absl::InvalidArgumentError(
          absl::StrCat("sweeps[", i, "].site: unknown value ", s.site()));
    }
    if (!seen.insert({s.site(), s.all_positions()}).second) {
      return absl::InvalidArgumentError(absl::StrCat("sweeps[", i, "]: given twice"));
    }
    spec.sweeps.push_back({static_cast<PatchingSite>(s.site()), s.all_positions()});
  }
  spec.layers.assign(r.layers().begin(), r.layers().end());
  spec.positions.assign(r.positions().begin(), r.positions().end());
  const int64_t cells = PatchingCellsFor(spec, info);
  if (cells > limits.max_patching_cells) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "sweeps: ", cells, " patched runs exceed the server's --max_patching_cells of ",
        limits.max_patching_cells, "; sweep fewer layers, positions or sites"));
  }
  return spec;
}

int64_t PatchingCellsFor(const ActivationPatchingSpec& spec, const ServedModelInfo& info) {
  return PatchingCells(spec, info.num_layers, info.num_heads, KvHeads(info));
}

void FillPatchingResult(const ActivationPatchingOutput& out, const LoadedModel& model,
                        const ActivationPatchingSpec& spec, v1::ActivationPatchingResult* result) {
  for (const int64_t id : spec.clean) FillToken(model, id, result->add_clean_tokens());
  for (const int64_t id : spec.corrupted) FillToken(model, id, result->add_corrupted_tokens());
  result->set_clean_metric(out.clean_metric);
  result->set_corrupted_metric(out.corrupted_metric);
  if (out.target >= 0) FillToken(model, out.target, result->mutable_target());
  result->mutable_layers()->Add(out.layers.begin(), out.layers.end());
  result->mutable_positions()->Add(out.positions.begin(), out.positions.end());
  for (const PatchingGrid& grid : out.grids) {
    v1::PatchingGrid* g = result->add_grids();
    g->mutable_sweep()->set_site(static_cast<v1::PatchingSite>(grid.sweep.site));
    g->mutable_sweep()->set_all_positions(grid.sweep.all_positions);
    g->set_name(GridName(grid.sweep));
    for (const std::string& d : grid.dims) g->add_dims(d);
    g->mutable_shape()->Add(grid.shape.begin(), grid.shape.end());
    g->mutable_metric()->Add(grid.metric.begin(), grid.metric.end());
    g->mutable_normalized()->Add(grid.normalized.begin(), grid.normalized.end());
  }
  result->set_patched_runs(out.patched_runs);
  result->set_forward_passes(out.forward_passes);
}

}  // namespace lensd::server
