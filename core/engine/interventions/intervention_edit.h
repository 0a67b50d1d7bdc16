// One prepared intervention and how it edits a hook point's value (internal to interventions/).
//
// The value is viewed as [batch, pos, width], or [batch, pos, heads, width] for per-head points
// (scores and patterns, [batch, heads, query, key], are viewed as [batch, query, heads, key]);
// the edit reads the selection (the chosen positions of this call, and heads), computes its new
// value and writes it back into a copy.
#ifndef LENSD_CORE_ENGINE_INTERVENTIONS_INTERVENTION_EDIT_H_
#define LENSD_CORE_ENGINE_INTERVENTIONS_INTERVENTION_EDIT_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/engine/interventions/interventions.h"
#include "core/engine/model/hook_names.h"
#include "core/engine/sae/sae.h"
#include "core/intervention_types.h"

namespace lensd::engine {

struct Interventions::Edit {
  HookPoint point{HookKind::kResidPre};
  InterventionOp op = InterventionOp::kZero;
  InterventionSpan span = InterventionSpan::kAll;
  std::vector<int64_t> positions;  // explicit sequence positions; empty: every one of `span`
  int64_t prompt_length = 0;
  bool per_head = false;   // the view has a heads dimension
  bool query_key = false;  // scores / pattern: transposed to [batch, query, heads, key]
  at::Tensor heads;        // [H] int64 on the model's device (per-head points; all when none named)
  // kSet / kAdd / kMean with a given value: broadcast to the selection; with `tensor_rows`, its
  // first dimension holds one row per selected position (explicit positions in order, or every
  // position of the sequence).
  at::Tensor tensor;
  bool tensor_rows = false;
  // kPatch / kMean over inputs: [T, (H), width] per position (`by_position`), or [(H), width].
  at::Tensor source;
  bool by_position = false;
  at::Tensor basis;  // kProjectOut / kKeepOnly: [width, r] orthonormal columns (float32)
  double number = 1.0;
  std::shared_ptr<const Sae> sae;  // kSaeClamp
  int64_t feature = 0;

  // The edited value of `value` (the hook point's value in one forward call whose first column
  // is sequence position `offset`); `value` itself when no selected position is in this call.
  at::Tensor Apply(const at::Tensor& value, int64_t offset) const;

 private:
  // Columns of this call the edit touches, and for each the row of `tensor` it takes.
  void Select(int64_t offset, int64_t columns, std::vector<int64_t>* local,
              std::vector<int64_t>* rows) const;
  at::Tensor Compute(const at::Tensor& selection, const at::Tensor& positions,
                     const at::Tensor& rows) const;
};

// Checks spec `index` of a request against the model and builds its edit
// (intervention_build.cc); INVALID_ARGUMENT or NOT_FOUND names interventions[index] and the field.
absl::StatusOr<std::shared_ptr<Interventions::Edit>> BuildEdit(const CausalLm& model,
                                                               const InterventionSpec& spec,
                                                               size_t index,
                                                               const InterventionRun& run,
                                                               const SaeLookup& saes);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_INTERVENTIONS_INTERVENTION_EDIT_H_
