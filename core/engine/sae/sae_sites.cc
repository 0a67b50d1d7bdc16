// Where SAEs attach, and EncodeSaes.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/engine/attribution/attribution.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

// sparsify's hookpoints are Hugging Face module paths; the TransformerLens name they read.
std::string FromModulePath(absl::string_view path) {
  for (const absl::string_view prefix : {"model.", "transformer.", "gpt_neox.", "base_model."}) {
    absl::ConsumePrefix(&path, prefix);
  }
  if (path == "embed_tokens" || path == "wte" || path == "embed_in") return "hook_embed";
  if (!absl::ConsumePrefix(&path, "layers.") && !absl::ConsumePrefix(&path, "h.")) return "";
  const size_t dot = path.find('.');
  int64_t layer = 0;
  if (!absl::SimpleAtoi(path.substr(0, dot), &layer)) return "";
  const absl::string_view rest = dot == absl::string_view::npos ? "" : path.substr(dot + 1);
  std::string hook;
  if (rest.empty()) {
    hook = "hook_resid_post";
  } else if (rest == "mlp") {
    hook = "hook_mlp_out";
  } else if (rest == "attn" || rest == "self_attn" || rest == "attention") {
    hook = "hook_attn_out";
  } else {
    return "";
  }
  return absl::StrCat("blocks.", layer, ".", hook);
}

// Activations at a point as [batch, t, width] (attn.hook_z's heads flattened).
at::Tensor Flatten(const at::Tensor& value) { return value.dim() == 4 ? value.flatten(2) : value; }

}  // namespace

int64_t HookWidth(HookPoint point, const ModelConfig& model) {
  switch (point.kind) {
    case HookKind::kEmbed:
    case HookKind::kPosEmbed:
    case HookKind::kUnembedIn:
    case HookKind::kLnFinalNormalized:
    case HookKind::kResidPre:
    case HookKind::kResidMid:
    case HookKind::kResidPost:
    case HookKind::kAttnOut:
    case HookKind::kMlpOut:
    case HookKind::kLn1Normalized:
    case HookKind::kLn2Normalized:
    case HookKind::kAttnZ:
    case HookKind::kAttnQ:
    case HookKind::kMlpPre:
    case HookKind::kMlpPreLinear:
    case HookKind::kMlpPost:
      return HookShapeOf(point, model).per_position;
    default:
      return 0;
  }
}

absl::StatusOr<HookPoint> SaeHookPoint(const SaeConfig& config, const std::string& hook_override,
                                       const ModelConfig& model) {
  std::string name = hook_override.empty() ? config.hook_name : hook_override;
  if (hook_override.empty() && config.format == "sparsify") name = FromModulePath(name);
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("hook_point: the SAE's cfg.json names no hook point",
                     config.format == "sparsify"
                         ? absl::StrCat(" lensd understands (folder \"", config.hook_name, "\")")
                         : "",
                     "; give one"));
  }
  auto point = ParseHookName(name, model);
  if (!point.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("hook_point: ", point.status().message()));
  }
  const int64_t width = HookWidth(*point, model);
  if (width == 0) {
    return absl::InvalidArgumentError(absl::StrCat("hook_point: ", name,
                                                   " is not a point an SAE can read (a residual, "
                                                   "attention or MLP activation)"));
  }
  if (width != config.d_in) {
    return absl::InvalidArgumentError(
        absl::StrCat("hook_point: the SAE has d_in = ", config.d_in, " but ", name, " has width ",
                     width, " on this model (is it the SAE of another model or site?)"));
  }
  return *point;
}

absl::StatusOr<std::vector<SaeEncoding>> EncodeSaes(const CausalLm& model,
                                                    const std::vector<SaeSite>& sites,
                                                    const EncodeSaeSpec& spec) {
  const auto t = static_cast<int64_t>(spec.tokens.size());
  for (const int64_t p : spec.excluded_positions) {
    if (p < 0 || p >= t) {
      return absl::InvalidArgumentError(
          absl::StrCat("excluded_positions: ", p, " out of range 0..", t - 1));
    }
  }
  if (spec.top_k < 0) return absl::InvalidArgumentError("top_k: must be >= 0");
  return CatchTorch("encode SAEs", [&]() -> absl::StatusOr<std::vector<SaeEncoding>> {
    std::vector<HookPoint> points;
    points.reserve(sites.size());
    for (const SaeSite& site : sites) points.push_back(site.point);
    LENSD_ASSIGN_OR_RETURN(
        const std::vector<at::Tensor> captured,
        CaptureHookPoints(model, points, at::tensor(spec.tokens, at::kLong).unsqueeze(0)));
    c10::InferenceMode inference;
    at::Tensor keep = at::ones({t}, at::kBool);
    for (const int64_t p : spec.excluded_positions) keep[p] = false;
    std::vector<SaeEncoding> out;
    for (size_t i = 0; i < sites.size(); ++i) {
      const SaeSite& site = sites[i];
      const Sae& sae = *site.sae;
      const at::Tensor x = Flatten(captured[i])[0].to(sae.dtype());
      SaeCode code = sae.Encode(x);
      code.features = code.features * keep.to(code.features.device()).unsqueeze(1);
      const at::Tensor x_hat = sae.Decode(code);
      const at::Tensor xf = x.to(at::kFloat);
      const at::Tensor err2 = (xf - x_hat.to(at::kFloat)).pow(2).sum(-1).cpu();
      const at::Tensor kept = keep.to(xf.device());
      const at::Tensor mean = xf.index({kept}).mean(0, true);
      const at::Tensor var2 = (xf - mean).pow(2).sum(-1).cpu();
      const at::Tensor f = code.features.to(at::kFloat).cpu();
      SaeEncoding e;
      e.sae = site.name;
      e.hook_point = HookName(site.point);
      e.offsets.push_back(0);
      double err_total = 0;
      double var_total = 0;
      // Reported features: the top_k (or every) activation above the threshold, largest first.
      const int64_t k = spec.top_k > 0 ? std::min(spec.top_k, f.size(1)) : f.size(1);
      const auto [top_values, top_indices] = f.topk(k, 1, /*largest=*/true, /*sorted=*/true);
      const auto values = top_values.accessor<float, 2>();
      const auto indices = top_indices.accessor<int64_t, 2>();
      const at::Tensor l0 = f.gt(0).sum(1);
      const auto active = l0.accessor<int64_t, 1>();
      const auto err_at = err2.to(at::kDouble).contiguous();
      const auto var_at = var2.to(at::kDouble).contiguous();
      const auto errs = err_at.accessor<double, 1>();
      const auto vars = var_at.accessor<double, 1>();
      const auto kept_at = keep.accessor<bool, 1>();
      for (int64_t p = 0; p < t; ++p) {
        for (int64_t j = 0; j < k && values[p][j] > spec.threshold; ++j) {
          e.indices.push_back(indices[p][j]);
          e.values.push_back(values[p][j]);
        }
        e.offsets.push_back(static_cast<int64_t>(e.indices.size()));
        e.l0.push_back(active[p]);
        e.error_norm.push_back(static_cast<float>(std::sqrt(errs[p])));
        e.fvu.push_back(vars[p] > 0 ? static_cast<float>(errs[p] / vars[p]) : 0.0F);
        if (kept_at[p]) {
          err_total += errs[p];
          var_total += vars[p];
        }
      }
      e.fvu_total = var_total > 0 ? err_total / var_total : 0;
      out.push_back(std::move(e));
    }
    return out;
  });
}

}  // namespace lensd::engine
