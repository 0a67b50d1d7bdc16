#include "core/eval_spec.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd {
namespace {

absl::Status Field(absl::string_view field, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", want));
}

}  // namespace

int64_t EvalLensSpec::num_batches(int64_t sequences) const {
  const int64_t all = (sequences + batch - 1) / batch;
  return tokens.has_value() ? std::min(*tokens / (batch * seq_len), all) : all;
}

absl::Status EvalLensSpec::Validate() const {
  if (lenses.empty() || lenses.size() > 64) return Field("lenses", "name 1..64 lenses");
  std::set<std::string> seen;
  for (const std::string& lens : lenses) {
    if (lens != "logit" && !IsValidLensName(lens)) {
      return Field("lenses", absl::StrCat("\"", lens, "\" is not a lens name"));
    }
    if (!seen.insert(lens).second) {
      return Field("lenses", absl::StrCat("\"", lens, "\" is named twice"));
    }
  }
  if (seq_len < 2 || seq_len > 1'000'000) return Field("seq_len", "2..1,000,000");
  if (batch < 1 || batch > 4096) return Field("batch", "1..4096");
  if (std::abs(token_shift) >= seq_len) {
    return Field("token_shift", "smaller in magnitude than seq_len");
  }
  if (tokens.has_value() && *tokens < batch * seq_len) {
    return Field("tokens", absl::StrCat("at least one batch: batch x seq_len = ", batch * seq_len,
                                        " (tuned-lens's batch limit must be positive)"));
  }
  return data.Validate();
}

std::string EvalLensSpec::ToJson() const {
  nlohmann::ordered_json j;
  j["lenses"] = lenses;
  j["seq_len"] = seq_len;
  j["batch"] = batch;
  if (tokens.has_value()) j["tokens"] = *tokens;
  j["token_shift"] = token_shift;
  j["seed"] = seed;
  j["data"] = data.ToJson();
  return j.dump();
}

absl::StatusOr<EvalLensSpec> EvalLensSpec::FromJson(const std::string& text) {
  namespace jf = json_fields;
  LENSD_ASSIGN_OR_RETURN(const nlohmann::json j, jf::Parse(text));
  EvalLensSpec s;
  if (!j.contains("lenses") || !j["lenses"].is_array()) return Field("lenses", "an array");
  s.lenses.clear();
  for (const auto& lens : j["lenses"]) {
    if (!lens.is_string()) return Field("lenses", "strings");
    s.lenses.push_back(lens.get<std::string>());
  }
  LENSD_ASSIGN_OR_RETURN(s.seq_len, jf::Int(j, "seq_len", ""));
  LENSD_ASSIGN_OR_RETURN(s.batch, jf::Int(j, "batch", ""));
  if (jf::Has(j, "tokens")) {
    LENSD_ASSIGN_OR_RETURN(s.tokens, jf::Int(j, "tokens", ""));
  }
  LENSD_ASSIGN_OR_RETURN(s.token_shift, jf::Int(j, "token_shift", ""));
  LENSD_ASSIGN_OR_RETURN(const int64_t seed, jf::Int(j, "seed", ""));
  s.seed = static_cast<uint64_t>(seed);
  if (!j.contains("data")) return Field("data", "an object");
  LENSD_ASSIGN_OR_RETURN(s.data, DataSpec::FromJson(j["data"]));
  LENSD_RETURN_IF_ERROR(s.Validate());
  return s;
}

std::string AggregateMetricsJson(const LensMetrics& m, double scale) {
  nlohmann::ordered_json j;
  for (const auto& [name, metrics] : m.lenses) {
    for (const char* metric : {"ce", "entropy", "kl"}) {
      const std::vector<double>& values = metrics.at(metric);
      for (size_t l = 0; l < values.size(); ++l) {
        j[name][metric][absl::StrCat("layer_", l)] = values[l] * scale;
      }
    }
  }
  j["baseline"]["ce"]["final"] = m.baseline_ce * scale;
  j["baseline"]["entropy"]["final"] = m.baseline_entropy * scale;
  return j.dump();
}

}  // namespace lensd
