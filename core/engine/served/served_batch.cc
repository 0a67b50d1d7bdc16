#include "core/engine/served/served_batch.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/engine/lens/decode_contract.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

template <typename T>
std::vector<T> ToVector(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  const T* data = c.data_ptr<T>();
  return std::vector<T>(data, data + c.numel());
}

}  // namespace

absl::Status ValidateDecodeSpec(const ModelConfig& c, const DecodeSpec& spec) {
  const auto length = static_cast<int64_t>(spec.tokens.size());
  LENSD_RETURN_IF_ERROR(
      CheckDecodeFields(c, {spec.layers, spec.positions, length, spec.top_k, spec.readout,
                            spec.statistics, spec.include_output, !spec.anti_targets.empty()}));
  LENSD_RETURN_IF_ERROR(CheckTargetIds(spec.targets, length, "targets", c.vocab_size));
  return CheckTargetIds(spec.anti_targets, length, "anti_targets", c.vocab_size);
}

BatchedDecode::BatchedDecode(const CausalLm& model, absl::Span<const DecodeSpec* const> batch)
    : batch_(batch), all_positions_(batch.front()->positions.empty()) {
  const DecodeSpec& first = *batch.front();
  const auto rows = static_cast<int64_t>(batch.size());
  size_t longest = 0;
  bool ragged = false;
  for (const DecodeSpec* s : batch) {
    ragged = ragged || (longest != 0 && s->tokens.size() != longest);
    longest = std::max(longest, s->tokens.size());
  }
  const auto t = static_cast<int64_t>(longest);
  const std::vector<int64_t>& eos = model.config().eos_token_ids;
  at::Tensor tokens = at::zeros({rows, t}, at::kLong);
  at::Tensor mask = at::zeros({rows, t}, at::kLong);
  at::Tensor targets = at::full({rows, t}, -1, at::kLong);
  const bool anti = (first.statistics & kLogProbDiff) != 0;
  at::Tensor anti_targets = anti ? at::full({rows, t}, -1, at::kLong) : at::Tensor();
  for (int64_t i = 0; i < rows; ++i) {
    const DecodeSpec& s = *batch[static_cast<size_t>(i)];
    const auto n = static_cast<int64_t>(s.tokens.size());
    const std::vector<int64_t> target =
        s.targets.empty() ? DefaultTargets(s.tokens, eos) : s.targets;
    tokens[i].narrow(0, 0, n).copy_(at::tensor(s.tokens, at::kLong));
    mask[i].narrow(0, 0, n).fill_(1);
    targets[i].narrow(0, 0, n).copy_(at::tensor(target, at::kLong));
    if (anti) anti_targets[i].narrow(0, 0, n).copy_(at::tensor(s.anti_targets, at::kLong));
  }
  request_.tokens = tokens;
  if (ragged) request_.attention_mask = mask;
  request_.layers = first.layers;
  request_.include_output = first.include_output;
  request_.positions = first.positions;
  request_.readout = first.readout;
  request_.top_k = first.top_k;
  request_.statistics = first.statistics;
  request_.targets = targets;
  request_.anti_targets = anti_targets;
  request_.mask_input = first.mask_input;
}

int64_t BatchedDecode::Columns(size_t i) const {
  return static_cast<int64_t>(all_positions_ ? batch_[i]->tokens.size()
                                             : batch_[i]->positions.size());
}

at::Tensor BatchedDecode::Slice(const at::Tensor& rows, size_t i) const {
  return rows.select(0, static_cast<int64_t>(i)).narrow(0, 0, Columns(i)).to(at::kFloat);
}

std::vector<DecodeOutput> BatchedDecode::Split(const DecodeResult& result) const {
  std::vector<DecodeOutput> outputs(batch_.size());
  const at::Tensor columns = at::tensor(result.positions, at::kLong);
  const at::Tensor targets = request_.targets.index_select(1, columns);
  for (size_t i = 0; i < batch_.size(); ++i) {
    DecodeOutput& out = outputs[i];
    const int64_t cols = Columns(i);
    const auto b = static_cast<int64_t>(i);
    const auto cut = [&](const at::Tensor& t) { return t.select(0, b).narrow(1, 0, cols); };
    const auto floats = [&](const at::Tensor& t, std::vector<float>* v) {
      if (t.defined()) *v = ToVector<float>(cut(t).to(at::kFloat));
    };
    out.rows = result.rows;
    out.positions.assign(result.positions.begin(), result.positions.begin() + cols);
    out.top_k = request_.top_k;
    out.batch_size = static_cast<int>(batch_.size());
    out.targets = ToVector<int64_t>(targets.select(0, b).narrow(0, 0, cols));
    if (result.top_ids.defined() && request_.top_k > 0) {
      out.top_ids = ToVector<int64_t>(cut(result.top_ids).to(at::kLong));
      out.top_probs = ToVector<float>(cut(result.top_probs).to(at::kFloat));
    }
    floats(result.entropy, &out.entropy);
    floats(result.forward_kl, &out.forward_kl);
    floats(result.cross_entropy, &out.cross_entropy);
    if (result.target_rank.defined())
      out.target_rank = ToVector<int64_t>(cut(result.target_rank).to(at::kLong));
    floats(result.max_probability, &out.max_probability);
    floats(result.log_prob_diff, &out.log_prob_diff);
    floats(result.kl_to_other, &out.kl_to_other);
    floats(result.symmetric_kl, &out.symmetric_kl);
    floats(result.max_abs_prob_diff, &out.max_abs_prob_diff);
  }
  return outputs;
}

}  // namespace lensd::engine
