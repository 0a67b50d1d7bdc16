#include "server/convert.h"

#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/decode_grid.h"

namespace lensd::server {
namespace {

absl::StatusOr<uint32_t> Statistics(const v1::DecodeRequest& request) {
  if (request.statistics_size() == 0) return kDefaultStatistics;
  uint32_t flags = 0;
  for (const int s : request.statistics()) {
    switch (s) {
      case v1::STATISTIC_NONE:
        break;
      case v1::STATISTIC_ENTROPY:
        flags |= kEntropy;
        break;
      case v1::STATISTIC_FORWARD_KL:
        flags |= kForwardKl;
        break;
      case v1::STATISTIC_CROSS_ENTROPY:
        flags |= kCrossEntropy;
        break;
      case v1::STATISTIC_TARGET_RANK:
        flags |= kTargetRank;
        break;
      case v1::STATISTIC_MAX_PROBABILITY:
        flags |= kMaxProbability;
        break;
      case v1::STATISTIC_LOG_PROB_DIFF:
        flags |= kLogProbDiff;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("statistics: ", s, " is not a Statistic (see lens.proto)"));
    }
  }
  return flags;
}

}  // namespace

std::string TokenText(const LoadedModel& model, int64_t id) {
  if (model.tokenizer == nullptr) return "";
  const int32_t one = static_cast<int32_t>(id);
  return model.tokenizer->Decode(absl::MakeConstSpan(&one, 1), false);
}

void FillToken(const LoadedModel& model, int64_t id, v1::Token* token) {
  token->set_id(id);
  token->set_text(TokenText(model, id));
}

absl::StatusOr<std::vector<int64_t>> ResolveInput(const v1::Input& input, const LoadedModel& model,
                                                  const Limits& limits, int64_t* text_bytes) {
  std::vector<int64_t> ids;
  *text_bytes = 0;
  switch (input.kind_case()) {
    case v1::Input::kText: {
      if (model.tokenizer == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "input.text: model ", model.name, " has no tokenizer.json; send input.tokens"));
      }
      if (input.text().empty()) return absl::InvalidArgumentError("input.text is empty");
      if (static_cast<int64_t>(input.text().size()) > limits.max_tokens_per_request * 64) {
        return absl::ResourceExhaustedError("input.text is far longer than max_tokens_per_request");
      }
      absl::StatusOr<tokenizer::Encoding> encoding =
          model.tokenizer->Encode(input.text(), input.add_special_tokens());
      if (!encoding.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("input.text: ", encoding.status().message()));
      }
      ids.assign(encoding->ids.begin(), encoding->ids.end());
      *text_bytes = static_cast<int64_t>(input.text().size());
      if (ids.empty()) return absl::InvalidArgumentError("input.text encodes to no tokens");
      break;
    }
    case v1::Input::kTokens:
      ids.assign(input.tokens().ids().begin(), input.tokens().ids().end());
      if (ids.empty()) return absl::InvalidArgumentError("input.tokens.ids is empty");
      break;
    default:
      return absl::InvalidArgumentError("input: set input.text or input.tokens");
  }
  if (static_cast<int64_t>(ids.size()) > limits.max_tokens_per_request) {
    return absl::ResourceExhaustedError(absl::StrCat("input: ", ids.size(),
                                                     " tokens exceed the server's "
                                                     "max_tokens_per_request of ",
                                                     limits.max_tokens_per_request));
  }
  return ids;
}

absl::Status RenameInputField(const absl::Status& status, absl::string_view field) {
  absl::string_view message = status.message();
  if (status.ok() || !absl::ConsumePrefix(&message, "input")) return status;
  return absl::Status(status.code(), absl::StrCat(field, message));
}

absl::StatusOr<std::vector<int64_t>> ResolveOtherInput(const v1::Input& input,
                                                       const LoadedModel& model,
                                                       const Limits& limits,
                                                       absl::string_view field) {
  int64_t bytes = 0;
  absl::StatusOr<std::vector<int64_t>> tokens = ResolveInput(input, model, limits, &bytes);
  if (!tokens.ok()) return RenameInputField(tokens.status(), field);
  return tokens;
}

absl::StatusOr<DecodeSpec> ToDecodeSpec(const v1::DecodeRequest& r, std::vector<int64_t> tokens) {
  DecodeSpec spec;
  spec.tokens = std::move(tokens);
  spec.lens = r.lens().empty() ? "logit" : r.lens();
  spec.layers.assign(r.layers().begin(), r.layers().end());
  spec.include_output = !r.exclude_output();
  spec.positions.assign(r.positions().begin(), r.positions().end());
  if (r.readout() != v1::READOUT_RESID_PRE && r.readout() != v1::READOUT_RESID_MID) {
    return absl::InvalidArgumentError(absl::StrCat("readout: ", r.readout(), " is not a Readout"));
  }
  spec.readout = r.readout() == v1::READOUT_RESID_MID ? Readout::kResidMid : Readout::kResidPre;
  spec.top_k = r.has_top_k() ? r.top_k() : 5;
  auto statistics = Statistics(r);
  if (!statistics.ok()) return statistics.status();
  spec.statistics = *statistics;
  spec.targets.assign(r.targets().begin(), r.targets().end());
  spec.anti_targets.assign(r.anti_targets().begin(), r.anti_targets().end());
  spec.mask_input = r.mask_input();
  spec.compare_lens = r.compare_lens();
  return spec;
}

void FillDecodeResponse(const v1::DecodeRequest& request, const DecodeOutput& out,
                        const LoadedModel& model, const std::vector<int64_t>& tokens,
                        double nats_to_bpb, v1::DecodeResponse* response) {
  const int64_t num_layers = model.model->info().num_layers;
  const double scale = request.bits_per_byte() ? nats_to_bpb : 1.0;
  response->set_model(model.name);
  response->set_lens(request.lens().empty() ? "logit" : request.lens());
  response->set_units(request.bits_per_byte() ? "bits_per_byte" : "nats");
  response->set_nats_to_bits_per_byte(nats_to_bpb);
  response->set_batch_size(out.batch_size);
  for (const int64_t id : tokens) FillToken(model, id, response->add_input_tokens());
  if (request.packed()) {
    FillDecodeGrid(out, model, scale, response->mutable_grid());
    return;
  }
  const size_t columns = out.positions.size();
  const auto k = static_cast<size_t>(out.top_k);
  // Each token's text once: the same ids come back in many cells.
  absl::flat_hash_map<int64_t, std::string> texts;
  const auto text = [&](int64_t id) -> const std::string& {
    auto it = texts.find(id);
    if (it == texts.end()) it = texts.emplace(id, TokenText(model, id)).first;
    return it->second;
  };
  for (size_t r = 0; r < out.rows.size(); ++r) {
    v1::DecodeRow* row = response->add_rows();
    row->set_layer(out.rows[r]);
    row->set_is_output(out.rows[r] == num_layers);
    for (size_t p = 0; p < columns; ++p) {
      const size_t cell_index = r * columns + p;
      v1::DecodeCell* cell = row->add_cells();
      cell->set_position(out.positions[p]);
      cell->set_target(out.targets[p]);
      for (size_t j = 0; j < k && !out.top_ids.empty(); ++j) {
        v1::TopToken* top = cell->add_top();
        top->set_id(out.top_ids[cell_index * k + j]);
        top->set_text(text(top->id()));
        top->set_prob(out.top_probs[cell_index * k + j]);
      }
      const auto scaled = [&](const std::vector<float>& v) {
        return static_cast<float>(v[cell_index] * scale);
      };
      if (!out.entropy.empty()) cell->set_entropy(scaled(out.entropy));
      if (!out.forward_kl.empty()) cell->set_forward_kl(scaled(out.forward_kl));
      if (!out.cross_entropy.empty()) cell->set_cross_entropy(scaled(out.cross_entropy));
      if (!out.target_rank.empty()) cell->set_target_rank(out.target_rank[cell_index]);
      if (!out.max_probability.empty()) cell->set_max_probability(out.max_probability[cell_index]);
      if (!out.log_prob_diff.empty()) cell->set_log_prob_diff(out.log_prob_diff[cell_index]);
      if (!out.kl_to_other.empty()) cell->set_kl_to_compare(scaled(out.kl_to_other));
      if (!out.symmetric_kl.empty()) cell->set_symmetric_kl_to_compare(scaled(out.symmetric_kl));
      if (!out.max_abs_prob_diff.empty()) {
        cell->set_max_abs_prob_diff_to_compare(out.max_abs_prob_diff[cell_index]);
      }
    }
  }
}

absl::StatusOr<GenerateSpec> ToGenerateSpec(const v1::GenerateRequest& r,
                                            std::vector<int64_t> tokens, const Limits& limits) {
  GenerateSpec spec;
  spec.tokens = std::move(tokens);
  spec.lens = r.lens().empty() ? "logit" : r.lens();
  spec.layer = r.has_layer() ? r.layer() : -1;
  if (r.has_layer() && r.layer() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("layer: ", r.layer(), " is negative"));
  }
  spec.max_new_tokens = r.has_max_new_tokens() ? r.max_new_tokens() : 32;
  if (spec.max_new_tokens < 1 || spec.max_new_tokens > limits.max_new_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens: ", spec.max_new_tokens,
                                                   " is outside 1..", limits.max_new_tokens));
  }
  if (static_cast<int64_t>(spec.tokens.size()) + spec.max_new_tokens >
      limits.max_tokens_per_request + limits.max_new_tokens) {
    return absl::ResourceExhaustedError("input plus max_new_tokens exceed the server's limits");
  }
  spec.greedy = r.greedy();
  spec.temperature = r.has_temperature() ? r.temperature() : 1.0;
  if (!spec.greedy && !(spec.temperature > 0 && std::isfinite(spec.temperature))) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature: ", spec.temperature, " must be > 0 (or set greedy)"));
  }
  spec.top_k = r.top_k();
  if (spec.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k: ", spec.top_k, " must be >= 0"));
  }
  spec.top_p = r.has_top_p() ? r.top_p() : 1.0;
  if (!(spec.top_p > 0 && spec.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p: ", spec.top_p, " must be in (0, 1]"));
  }
  spec.seed = r.seed();
  spec.stop_tokens.assign(r.stop_tokens().begin(), r.stop_tokens().end());
  spec.stop_at_eos = !r.ignore_eos();
  spec.early_exit = r.early_exit();
  return spec;
}

}  // namespace lensd::server
