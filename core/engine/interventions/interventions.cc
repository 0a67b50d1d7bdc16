#include "core/engine/interventions/interventions.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/engine/interventions/intervention_edit.h"
#include "core/engine/model/device.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

using Edit = Interventions::Edit;

// The value at `point` on `tokens` as [T, (H), width], the heads of `edit` only.
at::Tensor SourceView(const at::Tensor& captured, const Edit& edit) {
  at::Tensor v = edit.query_key ? captured.transpose(1, 2) : captured;
  v = v.squeeze(0);
  if (edit.per_head) v = v.index_select(1, edit.heads);
  return v;
}

}  // namespace

absl::Status Interventions::Validate(const CausalLm& model,
                                     const std::vector<InterventionSpec>& specs,
                                     const InterventionRun& run, const SaeLookup& saes) {
  return CatchTorch("interventions", [&]() -> absl::Status {
    c10::InferenceMode inference;
    for (size_t i = 0; i < specs.size(); ++i) {
      LENSD_RETURN_IF_ERROR(BuildEdit(model, specs[i], i, run, saes).status());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Interventions> Interventions::Prepare(const CausalLm& model,
                                                     const std::vector<InterventionSpec>& specs,
                                                     const InterventionRun& run,
                                                     const SaeLookup& saes) {
  return CatchTorch("interventions", [&]() -> absl::StatusOr<Interventions> {
    // Prepared tensors may meet autograd (activation gradients): not inference tensors.
    c10::InferenceMode normal(false);
    std::vector<std::shared_ptr<Edit>> edits;
    std::map<std::vector<int64_t>, std::vector<HookPoint>> sources;
    for (size_t i = 0; i < specs.size(); ++i) {
      LENSD_ASSIGN_OR_RETURN(edits.emplace_back(), BuildEdit(model, specs[i], i, run, saes));
      for (const auto& input : specs[i].inputs) sources[input].push_back(edits.back()->point);
    }
    std::map<std::pair<std::vector<int64_t>, int64_t>, at::Tensor> values;  // (input, point index)
    for (const auto& [tokens, points] : sources) {
      LENSD_ASSIGN_OR_RETURN(
          const std::vector<at::Tensor> captured,
          CaptureHookPoints(model, points, at::tensor(tokens, at::kLong).unsqueeze(0)));
      for (size_t j = 0; j < points.size(); ++j) {
        values[{tokens, static_cast<int64_t>(j)}] = captured[j].clone();
      }
    }
    std::map<std::vector<int64_t>, size_t> next;  // the next captured point of each input
    Interventions out;
    for (size_t i = 0; i < specs.size(); ++i) {
      Edit& edit = *edits[i];
      std::vector<at::Tensor> views;
      for (const auto& input : specs[i].inputs) {
        const auto j = static_cast<int64_t>(next[input]++);
        views.push_back(SourceView(values.at({input, j}), edit));
      }
      if (edit.op == InterventionOp::kPatch) {
        edit.source = views.front();
        edit.by_position = true;
      } else if (!views.empty() && specs[i].per_position) {
        int64_t shortest = views.front().size(0);
        for (const at::Tensor& v : views) shortest = std::min(shortest, v.size(0));
        for (at::Tensor& v : views) v = v.narrow(0, 0, shortest).to(at::kFloat);
        edit.source = at::stack(views).mean(0).to(model.dtype());
        edit.by_position = true;
      } else if (!views.empty()) {
        for (at::Tensor& v : views) v = v.to(at::kFloat);
        edit.source = at::cat(views).mean(0).to(model.dtype());
      }
      out.edits_.push_back(edits[i]);
    }
    return out;
  });
}

void Interventions::Install(Hooks& hooks) const {
  for (const std::shared_ptr<const Edit>& edit : edits_) {
    hooks.Edit(edit->point, [edit](const at::Tensor& value, int64_t offset) {
      return edit->Apply(value, offset);
    });
  }
}

}  // namespace lensd::engine
