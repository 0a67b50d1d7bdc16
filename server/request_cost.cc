#include "server/request_cost.h"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"

namespace lensd::server {
namespace {

// Serialized sizes, rounded up: a TopToken (id, text of a few bytes, probability, framing), a
// DecodeCell without its top tokens, one statistic, an input token, a sparse feature (index and
// value in packed arrays), an attribution node (names, layer, position, index, values).
constexpr double kTopTokenBytes = 24;
constexpr double kCellBytes = 16;
constexpr double kStatisticBytes = 6;
constexpr double kTokenBytes = 16;
constexpr double kFeatureBytes = 12;
constexpr double kNodeBytes = 96;

int64_t Saturate(double bytes) {
  constexpr double kMax = 4.0e18;  // below the largest int64_t, with room to add
  return static_cast<int64_t>(std::min(std::ceil(bytes), kMax));
}

std::string Mib(int64_t bytes) {
  const double mib = static_cast<double>(bytes) / (1 << 20);
  return mib < 10 ? absl::StrCat(std::round(mib * 10) / 10, " MiB")
                  : absl::StrCat(static_cast<int64_t>(std::round(mib)), " MiB");
}

int64_t ElementBytes(const std::string& dtype) {
  if (dtype == "float16" || dtype == "bfloat16") return 2;
  if (dtype == "float64" || dtype == "int64") return 8;
  return 4;
}

}  // namespace

RequestCost DecodeCost(const DecodeSpec& spec, const ServedModelInfo& info, bool stream) {
  const auto tokens = static_cast<double>(spec.tokens.size());
  const double rows =
      static_cast<double>(spec.layers.empty() ? info.num_layers : spec.layers.size()) +
      (spec.include_output ? 1 : 0);
  const double columns =
      spec.positions.empty() ? tokens : static_cast<double>(spec.positions.size());
  const double cells = rows * columns;
  const auto statistics = static_cast<double>(std::bitset<32>(spec.statistics).count());
  const double comparisons = spec.compare_lens.empty() ? 1 : 2;
  const auto top_k = static_cast<double>(spec.top_k);
  const double summary = cells * (kCellBytes + kStatisticBytes * (statistics + comparisons - 1) +
                                  kTopTokenBytes * top_k) +
                         tokens * kTokenBytes;
  const auto vocab = static_cast<double>(info.vocab_size);
  RequestCost cost;
  cost.message_bytes = Saturate(summary);
  cost.answer_bytes = Saturate(summary + (stream ? cells * vocab * 4 : 0));
  // Every row's hidden states, and one row's log-probabilities (with the compared lens's).
  cost.work_bytes = Saturate(rows * tokens * static_cast<double>(info.d_model) * 4 +
                             columns * vocab * 4 * 2 * comparisons);
  cost.what = absl::StrCat(
      static_cast<int64_t>(rows), " rows x ", static_cast<int64_t>(columns), " positions x top_k ",
      spec.top_k, stream ? absl::StrCat(" with [", info.vocab_size, "] log-probabilities") : "");
  return cost;
}

RequestCost GenerateCost(const GenerateSpec& spec, const ServedModelInfo& info) {
  const double total =
      static_cast<double>(spec.tokens.size()) + static_cast<double>(spec.max_new_tokens);
  RequestCost cost;
  cost.answer_bytes = Saturate(static_cast<double>(spec.max_new_tokens) * kTokenBytes * 2);
  cost.message_bytes = Saturate(kTokenBytes * 2);
  cost.work_bytes = Saturate(static_cast<double>(info.num_layers) * 2 * total *
                                 static_cast<double>(info.d_model) *
                                 static_cast<double>(ElementBytes(info.dtype)) +
                             total * static_cast<double>(info.vocab_size) * 4);
  cost.what = absl::StrCat(spec.tokens.size(), " prompt + ", spec.max_new_tokens, " new tokens x ",
                           info.num_layers, " layers of key/value cache");
  return cost;
}

RequestCost ActivationsCost(const ActivationsSpec& spec, const ServedModelInfo& info) {
  const auto tokens = static_cast<double>(spec.tokens.size());
  const double element = spec.native_dtype ? static_cast<double>(ElementBytes(info.dtype)) : 4;
  double bytes = 0;
  for (const std::string& name : spec.hook_points) {
    const auto it = std::find(info.hook_points.begin(), info.hook_points.end(), name);
    if (it == info.hook_points.end()) continue;
    const auto i = static_cast<size_t>(it - info.hook_points.begin());
    if (i >= info.hook_widths.size()) continue;
    const double per_key = info.hook_per_key_position[i] ? tokens : 1;
    // A value, and its gradient (float32) with gradients.
    bytes += static_cast<double>(info.hook_widths[i]) * tokens * per_key *
             (element + (spec.gradients ? 4 : 0));
  }
  RequestCost cost;
  cost.answer_bytes = Saturate(bytes);
  cost.message_bytes = 4 << 20;  // chunks of at most 4 MiB
  cost.work_bytes = Saturate(bytes);
  cost.what = absl::StrCat(spec.hook_points.size(), " hook points x ", spec.tokens.size(),
                           " positions", spec.gradients ? " with gradients" : "");
  return cost;
}

RequestCost EncodeSaeCost(const EncodeSaeSpec& spec, const std::vector<SaeDescription>& saes) {
  const auto tokens = static_cast<double>(spec.tokens.size());
  double features = 0;
  double dense = 0;
  for (const SaeDescription& sae : saes) {
    const int64_t active = sae.k > 0 ? std::min(sae.k, sae.d_sae) : sae.d_sae;
    features += static_cast<double>(spec.top_k > 0 ? std::min(spec.top_k, active) : active);
    dense = std::max(dense, static_cast<double>(sae.d_sae));
  }
  RequestCost cost;
  cost.answer_bytes = Saturate(tokens * (features * kFeatureBytes + kTokenBytes * 2));
  cost.message_bytes = cost.answer_bytes;
  // One SAE's dense feature activations and its reconstruction at a time.
  cost.work_bytes = Saturate(tokens * dense * 4 * 2);
  cost.what = absl::StrCat(saes.size(), " SAEs x ", spec.tokens.size(), " positions x ",
                           spec.top_k > 0 ? absl::StrCat("top_k ", spec.top_k) : "every feature");
  return cost;
}

RequestCost NodeAttributionCost(const NodeAttributionSpec& spec, const ServedModelInfo& info,
                                const std::vector<SaeDescription>& saes) {
  auto tokens = static_cast<double>(spec.tokens.size());
  for (const auto& reference : spec.reference) {
    tokens = std::max(tokens, static_cast<double>(reference.size()));
  }
  double nodes = 0;
  double work = 0;
  for (const SaeDescription& sae : saes) {
    const double errors =
        spec.error_nodes == ErrorNodes::kPerDimension ? static_cast<double>(sae.d_in) : 1.0;
    nodes += tokens * (static_cast<double>(sae.d_sae) + errors);
    // Features, their baseline and gradient; the error, its baseline and gradient.
    work += tokens * (static_cast<double>(sae.d_sae) + static_cast<double>(sae.d_in)) * 4 * 3;
  }
  const double kept = spec.top_n > 0 ? std::min(nodes, static_cast<double>(spec.top_n)) : nodes;
  RequestCost cost;
  cost.answer_bytes = Saturate(kept * kNodeBytes + tokens * kTokenBytes);
  cost.message_bytes = cost.answer_bytes;
  cost.work_bytes =
      Saturate(work + tokens * static_cast<double>(info.vocab_size) * 4 * 2);  // logits, grads
  cost.what = absl::StrCat(saes.size(), " SAEs x ", spec.tokens.size(),
                           " positions: ", static_cast<int64_t>(nodes), " nodes",
                           spec.top_n > 0 ? absl::StrCat(", top_n ", spec.top_n) : "");
  return cost;
}

RequestCost LayerAttributionCost(const LayerAttributionSpec& spec, const ServedModelInfo& info) {
  const auto tokens = static_cast<double>(spec.tokens.size());
  const auto layers = static_cast<double>(info.num_layers);
  const auto heads = static_cast<double>(info.num_heads);
  const auto d = static_cast<double>(info.d_model);
  const auto vocab = static_cast<double>(info.vocab_size);
  const bool direct = spec.mode == LayerAttributionMode::kDirectLogit;
  const double parts = direct ? 2 + 2 * layers : layers + 1;  // embeddings counted as two
  const double components = parts + (direct && spec.per_head ? layers * heads : 0);
  double work = parts * tokens * d * 4 + tokens * vocab * 4 + components * vocab * 4;
  if (direct && spec.per_head) {
    // H + 1 rows through a layer: its streams and every head's attention scores.
    work += (heads + 1) * (4 * tokens * d + heads * tokens * tokens) * 4;
  }
  RequestCost cost;
  cost.answer_bytes = Saturate(components * kNodeBytes / 2 + tokens * kTokenBytes);
  cost.message_bytes = cost.answer_bytes;
  cost.work_bytes = Saturate(work);
  cost.what = absl::StrCat(static_cast<int64_t>(components), " components x ", spec.tokens.size(),
                           " positions", spec.per_head ? " per head" : "");
  return cost;
}

RequestCost PatchingCost(const ActivationPatchingSpec& spec, const ServedModelInfo& info,
                         int64_t cells) {
  const auto tokens = static_cast<double>(spec.clean.size());
  const auto layers = static_cast<double>(info.num_layers);
  const auto heads = static_cast<double>(info.num_heads);
  const auto d = static_cast<double>(info.d_model);
  double captured = layers * tokens * d * 4;  // the stream entering each layer
  for (const PatchingSweep& sweep : spec.sweeps) {
    const bool pattern = sweep.site == PatchingSite::kHeadPattern;
    captured += layers * tokens * (pattern ? heads * tokens : d) * 4;
  }
  const double rows = std::max(1.0, std::floor(4096 / std::max(1.0, tokens)));
  const double pass = rows * (4 * tokens * d + heads * tokens * tokens) * 4 +
                      rows * static_cast<double>(info.vocab_size) * 4;
  RequestCost cost;
  cost.answer_bytes = Saturate(static_cast<double>(cells) * 8 + tokens * kTokenBytes);
  cost.message_bytes = cost.answer_bytes;
  cost.work_bytes = Saturate(captured + pass);
  cost.what = absl::StrCat(cells, " patched runs over ", spec.clean.size(), " positions, ",
                           spec.sweeps.size(), " sweeps");
  return cost;
}

absl::Status CheckRequestCost(const RequestCost& cost, const Limits& limits) {
  const auto refuse = [&](const char* estimate, int64_t bytes, int64_t bound, const char* flag) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this request would cost about ", Mib(bytes), " (", estimate, "; ", cost.what,
        "), over the server's bound of ", Mib(bound), " (", flag,
        "); ask for fewer positions, layers, hook points or top-k, or split the request"));
  };
  if (cost.message_bytes > limits.max_message_bytes) {
    return refuse("one answer message", cost.message_bytes, limits.max_message_bytes,
                  "--max_message_bytes");
  }
  if (cost.answer_bytes > limits.max_request_bytes) {
    return refuse("the answer", cost.answer_bytes, limits.max_request_bytes, "--max_request_bytes");
  }
  if (cost.work_bytes > limits.max_request_bytes) {
    return refuse("the work's tensors", cost.work_bytes, limits.max_request_bytes,
                  "--max_request_bytes");
  }
  return absl::OkStatus();
}

absl::Status CheckDistinct(const char* field, const std::vector<int64_t>& values) {
  std::set<int64_t> seen;
  for (const int64_t v : values) {
    if (!seen.insert(v).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", v, " is listed more than once; list each once"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDistinct(const char* field, const std::vector<std::string>& values) {
  std::set<std::string> seen;
  for (const std::string& v : values) {
    if (!seen.insert(v).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", v.substr(0, 128), "\" is listed more than once; list each once"));
    }
  }
  return absl::OkStatus();
}

std::vector<SaeDescription> NamedSaes(const AttachmentsModel& model,
                                      const std::vector<std::string>& names) {
  std::vector<SaeDescription> all = model.Saes();
  if (names.empty()) return all;
  std::vector<SaeDescription> named;
  named.reserve(names.size());
  for (const std::string& name : names) {
    for (const SaeDescription& sae : all) {
      if (sae.name == name) named.push_back(sae);
    }
  }
  return named;
}

}  // namespace lensd::server
