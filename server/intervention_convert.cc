#include "server/intervention_convert.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/convert.h"

namespace lensd::server {
namespace {

HostTensor ToHost(const v1::Tensor& t) {
  HostTensor out;
  out.dtype = t.dtype().empty() ? "float32" : t.dtype();
  out.shape.assign(t.shape().begin(), t.shape().end());
  out.data = t.data();
  return out;
}

absl::Status Invalid(const std::string& field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckFinite(const std::string& field, double value) {
  if (std::isfinite(value)) return absl::OkStatus();
  return Invalid(field, absl::StrCat(value, " is not a finite number"));
}

// The operation of `in`, with its inputs resolved into `inputs`.
absl::Status ToOperation(
    const v1::Intervention& in, const std::string& field,
    const std::function<absl::Status(const v1::Input&, const std::string&)>& add_input,
    InterventionSpec* out) {
  switch (in.operation_case()) {
    case v1::Intervention::kSet:
      out->op = InterventionOp::kSet;
      out->tensor = ToHost(in.set());
      return absl::OkStatus();
    case v1::Intervention::kAdd:
      out->op = InterventionOp::kAdd;
      out->tensor = ToHost(in.add().vector());
      out->number = in.add().has_coefficient() ? in.add().coefficient() : 1.0;
      return CheckFinite(field + ".add.coefficient", out->number);
    case v1::Intervention::kScale:
      out->op = InterventionOp::kScale;
      out->number = in.scale();
      return CheckFinite(field + ".scale", out->number);
    case v1::Intervention::kZero:
      out->op = InterventionOp::kZero;
      return absl::OkStatus();
    case v1::Intervention::kMean:
      out->op = InterventionOp::kMean;
      if (in.mean().has_value()) out->tensor = ToHost(in.mean().value());
      out->per_position = in.mean().per_position();
      for (int j = 0; j < in.mean().reference_size(); ++j) {
        LENSD_RETURN_IF_ERROR(
            add_input(in.mean().reference(j), absl::StrCat(field, ".mean.reference[", j, "]")));
      }
      return absl::OkStatus();
    case v1::Intervention::kPatch:
      out->op = InterventionOp::kPatch;
      return add_input(in.patch(), field + ".patch");
    case v1::Intervention::kProjectOut:
    case v1::Intervention::kKeepOnly: {
      const bool keep = in.operation_case() == v1::Intervention::kKeepOnly;
      out->op = keep ? InterventionOp::kKeepOnly : InterventionOp::kProjectOut;
      out->tensor = ToHost(keep ? in.keep_only() : in.project_out());
      return absl::OkStatus();
    }
    case v1::Intervention::kSaeClamp:
      out->op = InterventionOp::kSaeClamp;
      out->sae = in.sae_clamp().sae();
      out->feature = in.sae_clamp().feature();
      out->number = in.sae_clamp().value();
      if (out->sae.empty()) return Invalid(field + ".sae_clamp.sae", "name a loaded SAE");
      return CheckFinite(field + ".sae_clamp.value", out->number);
    case v1::Intervention::OPERATION_NOT_SET:
      break;
  }
  return Invalid(field,
                 "no operation; set one of set, add, scale, zero, mean, patch, "
                 "project_out, keep_only or sae_clamp");
}

}  // namespace

absl::StatusOr<std::vector<InterventionSpec>> ToInterventions(
    const google::protobuf::RepeatedPtrField<v1::Intervention>& list, const LoadedModel& model,
    const Limits& limits, int64_t* source_tokens) {
  *source_tokens = 0;
  if (list.size() > kMaxInterventions) {
    return Invalid("interventions", absl::StrCat(list.size(), " given; at most ", kMaxInterventions,
                                                 " per request"));
  }
  std::vector<InterventionSpec> out;
  out.reserve(static_cast<size_t>(list.size()));
  int inputs = 0;
  for (int i = 0; i < list.size(); ++i) {
    const v1::Intervention& in = list[i];
    const std::string field = absl::StrCat("interventions[", i, "]");
    InterventionSpec& spec = out.emplace_back();
    spec.hook_point = in.hook_point();
    spec.positions.assign(in.positions().begin(), in.positions().end());
    spec.heads.assign(in.heads().begin(), in.heads().end());
    spec.span = static_cast<InterventionSpan>(in.span());
    if (in.span() < 0 || in.span() > v1::INTERVENTION_SPAN_GENERATED) {
      return Invalid(field + ".span", absl::StrCat("unknown value ", in.span()));
    }
    const auto add_input = [&](const v1::Input& input, const std::string& where) -> absl::Status {
      if (++inputs > kMaxInterventionInputs) {
        return Invalid(where, absl::StrCat("more than ", kMaxInterventionInputs,
                                           " patch sources and mean references in one request"));
      }
      LENSD_ASSIGN_OR_RETURN(std::vector<int64_t> tokens,
                             ResolveOtherInput(input, model, limits, where));
      *source_tokens += static_cast<int64_t>(tokens.size());
      spec.inputs.push_back(std::move(tokens));
      return absl::OkStatus();
    };
    LENSD_RETURN_IF_ERROR(ToOperation(in, field, add_input, &spec));
  }
  return out;
}

}  // namespace lensd::server
