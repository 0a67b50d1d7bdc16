#include "core/engine/interventions/intervention_edit.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace lensd::engine {
namespace {

using at::indexing::Slice;
using at::indexing::TensorIndex;

at::Tensor LongOn(const std::vector<int64_t>& values, const at::Device& device) {
  return at::tensor(values, at::kLong).to(device);
}

}  // namespace

void Interventions::Edit::Select(int64_t offset, int64_t columns, std::vector<int64_t>* local,
                                 std::vector<int64_t>* rows) const {
  for (int64_t j = 0; j < columns; ++j) {
    const int64_t position = offset + j;
    if (!positions.empty()) {
      const auto it = std::find(positions.begin(), positions.end(), position);
      if (it == positions.end()) continue;
      local->push_back(j);
      rows->push_back(it - positions.begin());
      continue;
    }
    const bool in_prompt = position < prompt_length;
    if ((span == InterventionSpan::kPrompt && !in_prompt) ||
        (span == InterventionSpan::kGenerated && in_prompt)) {
      continue;
    }
    local->push_back(j);
    rows->push_back(position);
  }
}

at::Tensor Interventions::Edit::Compute(const at::Tensor& selection, const at::Tensor& positions,
                                        const at::Tensor& rows) const {
  const auto given = [&] { return tensor_rows ? tensor.index_select(0, rows) : tensor; };
  const auto from_source = [&] { return by_position ? source.index_select(0, positions) : source; };
  switch (op) {
    case InterventionOp::kSet:
      return given().expand_as(selection);
    case InterventionOp::kAdd:
      return selection + given() * number;
    case InterventionOp::kScale:
      return selection * number;
    case InterventionOp::kZero:
      return at::zeros_like(selection);
    case InterventionOp::kMean:
    case InterventionOp::kPatch:
      return (source.defined() ? from_source() : given()).expand_as(selection);
    case InterventionOp::kProjectOut:
    case InterventionOp::kKeepOnly: {
      const at::Tensor x = selection.to(at::kFloat);
      const at::Tensor inside = at::matmul(at::matmul(x, basis), basis.t());
      return op == InterventionOp::kKeepOnly ? inside : x - inside;
    }
    case InterventionOp::kSaeClamp: {
      // hook_z SAEs read the heads flattened.
      const at::Tensor x = per_head ? selection.flatten(-2) : selection;
      const SaeCode code = sae->Encode(x);
      at::Tensor clamped = code.features.clone();
      clamped.select(-1, feature).fill_(number);
      const at::Tensor delta = sae->Decode(clamped, code) - sae->Decode(code);
      return (x + delta.to(x.scalar_type())).view(selection.sizes());
    }
  }
  return selection;
}

at::Tensor Interventions::Edit::Apply(const at::Tensor& value, int64_t offset) const {
  const at::Tensor view = query_key ? value.transpose(1, 2) : value;
  std::vector<int64_t> local;
  std::vector<int64_t> rows;
  Select(offset, view.size(1), &local, &rows);
  if (local.empty()) return value;
  const at::Device device = value.device();
  const at::Tensor columns = LongOn(local, device);
  std::vector<TensorIndex> index{Slice(), per_head ? columns.view({-1, 1}) : columns};
  if (per_head) index.emplace_back(heads.view({1, -1}));
  const at::Tensor selection = view.index(index);
  const at::Tensor edited = Compute(selection, columns + offset, LongOn(rows, device));
  at::Tensor out = view.clone();
  out.index_put_(index, edited.to(out.scalar_type()));
  return query_key ? out.transpose(1, 2) : out;
}

}  // namespace lensd::engine
