#include "core/engine/lens/decode_contract.h"

#include "absl/strings/str_cat.h"

namespace lensd::engine {

absl::Status CheckDecodeFields(const ModelConfig& c, const DecodeFields& f) {
  for (const int64_t l : f.layers) {
    if (l < 0 || l >= c.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat("layers: layer ", l, " out of range: model ",
                                                     c.model_type, " has lens layers 0..",
                                                     c.num_layers - 1));
    }
  }
  if (f.length < 1) return absl::InvalidArgumentError("input: no tokens to decode");
  for (const int64_t p : f.positions) {
    if (p < 0 || p >= f.length) {
      return absl::InvalidArgumentError(absl::StrCat(
          "positions: position ", p, " out of range: the input has positions 0..", f.length - 1));
    }
  }
  if (f.top_k < 0 || f.top_k > c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("top_k: ", f.top_k, " out of range 0..",
                                                   c.vocab_size, " (the vocabulary size)"));
  }
  if (f.readout == Readout::kResidMid && c.parallel_residual) {
    return absl::InvalidArgumentError(absl::StrCat("readout: resid_mid does not exist in ",
                                                   c.model_type,
                                                   " (parallel attention and MLP); use resid_pre"));
  }
  if ((f.statistics & kLogProbDiff) != 0 && !f.has_anti_targets) {
    return absl::InvalidArgumentError("anti_targets: the log_prob_diff statistic needs them");
  }
  if (f.layers.empty() && c.num_layers == 0 && !f.include_output) {
    return absl::InvalidArgumentError("layers: nothing to decode");
  }
  return absl::OkStatus();
}

absl::Status CheckTargetIds(const std::vector<int64_t>& ids, int64_t length, const char* field,
                            int64_t vocab) {
  if (ids.empty()) return absl::OkStatus();
  if (static_cast<int64_t>(ids.size()) != length) {
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

std::vector<int64_t> DefaultTargets(const std::vector<int64_t>& tokens,
                                    const std::vector<int64_t>& eos_token_ids) {
  std::vector<int64_t> targets;
  if (tokens.empty()) return targets;
  targets.assign(tokens.begin() + 1, tokens.end());
  targets.push_back(eos_token_ids.empty() ? -1 : eos_token_ids.front());
  return targets;
}

}  // namespace lensd::engine
