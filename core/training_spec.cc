#include "core/training_spec.h"

#include <cctype>
#include <cmath>

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

bool IsValidLensName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "logit" || name[0] == '.') return false;
  for (const char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

absl::Status DataSpec::Validate() const {
  if (path.empty() == texts.empty()) {
    return Field("data", "give either a path under the data root or inline texts");
  }
  return absl::OkStatus();
}

nlohmann::ordered_json DataSpec::ToJson() const {
  return {{"path", path}, {"text_field", text_field}, {"texts", texts}};
}

absl::StatusOr<DataSpec> DataSpec::FromJson(const nlohmann::json& d) {
  namespace jf = json_fields;
  if (!d.is_object()) return Field("data", "an object");
  DataSpec s;
  LENSD_ASSIGN_OR_RETURN(s.path, jf::String(d, "path", "data"));
  LENSD_ASSIGN_OR_RETURN(s.text_field, jf::String(d, "text_field", "data"));
  if (!d.contains("texts") || !d["texts"].is_array()) return Field("data.texts", "an array");
  for (const auto& t : d["texts"]) {
    if (!t.is_string()) return Field("data.texts", "strings");
    s.texts.push_back(t.get<std::string>());
  }
  return s;
}

int64_t TrainLensSpec::grad_acc_steps() const {
  const int64_t samples = seq_len > 0 ? tokens_per_step / seq_len : 0;
  return micro_batch > 0 ? (samples + micro_batch - 1) / micro_batch : 0;
}

int64_t TrainLensSpec::sequences_needed() const {
  return num_steps * grad_acc_steps() * micro_batch;
}

absl::Status TrainLensSpec::Validate() const {
  if (!IsValidLensName(lens_name)) {
    return Field("lens_name", "1-128 letters, digits, '-', '_' or '.', not \"logit\"");
  }
  if (loss != "kl" && loss != "ce") return Field("loss", "\"kl\" or \"ce\"");
  if (num_steps < 1 || num_steps > 10'000'000) return Field("num_steps", "1..10,000,000");
  if (seq_len < 2 || seq_len > 1'000'000) return Field("seq_len", "2..1,000,000");
  if (token_shift.has_value() && std::abs(*token_shift) >= seq_len) {
    return Field("token_shift", "smaller in magnitude than seq_len");
  }
  if (tokens_per_step < seq_len || tokens_per_step % seq_len != 0) {
    return Field("tokens_per_step",
                 absl::StrCat(tokens_per_step, " must be a positive multiple of seq_len (", seq_len,
                              "), as tuned-lens requires"));
  }
  if (micro_batch < 1 || micro_batch > 4096) return Field("micro_batch", "1..4096");
  if (!(lr_scale > 0) || !std::isfinite(lr_scale)) return Field("lr_scale", "> 0");
  if (!(momentum >= 0 && momentum < 1)) return Field("momentum", "in [0, 1)");
  if (!(weight_decay >= 0) || !std::isfinite(weight_decay)) return Field("weight_decay", ">= 0");
  if (checkpoint_every < 1) return Field("checkpoint_every", ">= 1 step");
  if (precision != "auto" && precision != "bfloat16" && precision != "float32") {
    return Field("precision", "\"auto\", \"bfloat16\" or \"float32\"");
  }
  if (!warm_start.empty() && !IsValidLensName(warm_start)) {
    return Field("warm_start", "a lens folder name of the model");
  }
  return data.Validate();
}

std::string TrainLensSpec::ToJson() const {
  nlohmann::ordered_json j;
  j["lens_name"] = lens_name;
  j["loss"] = loss;
  if (token_shift.has_value()) j["token_shift"] = *token_shift;
  j["num_steps"] = num_steps;
  j["tokens_per_step"] = tokens_per_step;
  j["seq_len"] = seq_len;
  j["micro_batch"] = micro_batch;
  j["lr_scale"] = lr_scale;
  j["momentum"] = momentum;
  j["weight_decay"] = weight_decay;
  j["bias_only"] = bias_only;
  j["warm_start"] = warm_start;
  j["seed"] = seed;
  j["checkpoint_every"] = checkpoint_every;
  j["precision"] = precision;
  j["data"] = data.ToJson();
  return j.dump();
}

absl::StatusOr<TrainLensSpec> TrainLensSpec::FromJson(const std::string& text) {
  namespace jf = json_fields;
  LENSD_ASSIGN_OR_RETURN(const nlohmann::json j, jf::Parse(text));
  TrainLensSpec s;
  LENSD_ASSIGN_OR_RETURN(s.lens_name, jf::String(j, "lens_name", ""));
  LENSD_ASSIGN_OR_RETURN(s.loss, jf::String(j, "loss", ""));
  if (jf::Has(j, "token_shift")) {
    LENSD_ASSIGN_OR_RETURN(s.token_shift, jf::Int(j, "token_shift", ""));
  }
  LENSD_ASSIGN_OR_RETURN(s.num_steps, jf::Int(j, "num_steps", ""));
  LENSD_ASSIGN_OR_RETURN(s.tokens_per_step, jf::Int(j, "tokens_per_step", ""));
  LENSD_ASSIGN_OR_RETURN(s.seq_len, jf::Int(j, "seq_len", ""));
  LENSD_ASSIGN_OR_RETURN(s.micro_batch, jf::Int(j, "micro_batch", ""));
  LENSD_ASSIGN_OR_RETURN(s.lr_scale, jf::Double(j, "lr_scale", ""));
  LENSD_ASSIGN_OR_RETURN(s.momentum, jf::Double(j, "momentum", ""));
  LENSD_ASSIGN_OR_RETURN(s.weight_decay, jf::Double(j, "weight_decay", ""));
  LENSD_ASSIGN_OR_RETURN(s.bias_only, jf::Bool(j, "bias_only", false, ""));
  LENSD_ASSIGN_OR_RETURN(s.warm_start, jf::String(j, "warm_start", ""));
  LENSD_ASSIGN_OR_RETURN(const int64_t seed, jf::Int(j, "seed", ""));
  s.seed = static_cast<uint64_t>(seed);
  LENSD_ASSIGN_OR_RETURN(s.checkpoint_every, jf::Int(j, "checkpoint_every", ""));
  if (jf::Has(j, "precision")) {  // specs stored before the field existed ran in float32
    LENSD_ASSIGN_OR_RETURN(s.precision, jf::String(j, "precision", ""));
  } else {
    s.precision = "float32";
  }
  if (!j.contains("data")) return Field("data", "an object");
  LENSD_ASSIGN_OR_RETURN(s.data, DataSpec::FromJson(j["data"]));
  LENSD_RETURN_IF_ERROR(s.Validate());
  return s;
}

}  // namespace lensd
