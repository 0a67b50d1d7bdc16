#include "core/engine/served/served_batch.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace lensd::engine {
namespace {

absl::Status CheckIds(const std::vector<int64_t>& ids, size_t length, const char* field,
                      int64_t vocab) {
  if (ids.empty()) return absl::OkStatus();
  if (ids.size() != length) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", ids.size(), " ids given; it needs one per input token (", length, ")"));
  }
  for (const int64_t id : ids) {
    if (id < -1 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": token id ", id, " out of range 0..",
                                                     vocab - 1, " (or -1 for none)"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
std::vector<T> ToVector(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  const T* data = c.data_ptr<T>();
  return std::vector<T>(data, data + c.numel());
}

}  // namespace

absl::Status ValidateDecodeSpec(const ModelConfig& c, const DecodeSpec& spec) {
  for (const int64_t l : spec.layers) {
    if (l < 0 || l >= c.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat("layers: layer ", l, " out of range: model ",
                                                     c.model_type, " has lens layers 0..",
                                                     c.num_layers - 1));
    }
  }
  const auto length = static_cast<int64_t>(spec.tokens.size());
  for (const int64_t p : spec.positions) {
    if (p < 0 || p >= length) {
      return absl::InvalidArgumentError(absl::StrCat(
          "positions: position ", p, " out of range: the input has positions 0..", length - 1));
    }
  }
  if (spec.top_k < 0 || spec.top_k > c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("top_k: ", spec.top_k, " out of range 0..",
                                                   c.vocab_size, " (the vocabulary size)"));
  }
  if (spec.readout == Readout::kResidMid && c.parallel_residual) {
    return absl::InvalidArgumentError(absl::StrCat("readout: resid_mid does not exist in ",
                                                   c.model_type,
                                                   " (parallel attention and MLP); use resid_pre"));
  }
  if ((spec.statistics & kLogProbDiff) && spec.anti_targets.empty()) {
    return absl::InvalidArgumentError("anti_targets: the log_prob_diff statistic needs them");
  }
  if (spec.layers.empty() && c.num_layers == 0 && !spec.include_output) {
    return absl::InvalidArgumentError("layers: nothing to decode");
  }
  const size_t n = spec.tokens.size();
  if (auto s = CheckIds(spec.targets, n, "targets", c.vocab_size); !s.ok()) return s;
  return CheckIds(spec.anti_targets, n, "anti_targets", c.vocab_size);
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
    std::vector<int64_t> target = s.targets;
    if (target.empty()) {
      target.assign(s.tokens.begin() + 1, s.tokens.end());
      target.push_back(eos.empty() ? -1 : eos.front());
    }
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
