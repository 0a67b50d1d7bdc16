#include "core/engine/served/served_saes.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/engine/attribution/attribution_metric.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/device.h"
#include "core/engine/model/hook_names.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::optional<at::ScalarType>> LoadDtype(const SaeLoadOptions& options) {
  if (options.dtype.empty()) return std::optional<at::ScalarType>();
  absl::StatusOr<at::ScalarType> dtype = ParseDtype(options.dtype);
  if (!dtype.ok())
    return absl::InvalidArgumentError(absl::StrCat("dtype: ", dtype.status().message()));
  return std::optional<at::ScalarType>(*dtype);
}

std::string WeightsFile(const std::string& dir, const SaeConfig& config) {
  return (fs::path(dir) /
          (config.format == "sparsify" ? "sae.safetensors" : "sae_weights.safetensors"))
      .string();
}

}  // namespace

absl::StatusOr<SaeDescription> ServedSaes::Load(const std::string& name, const std::string& dir,
                                                const SaeLoadOptions& options) {
  {
    absl::MutexLock lock(&mu_);
    if (saes_.count(name) > 0) {
      return absl::AlreadyExistsError(absl::StrCat("SAE \"", name, "\" is already loaded"));
    }
  }
  LENSD_ASSIGN_OR_RETURN(const std::optional<at::ScalarType> dtype, LoadDtype(options));
  LENSD_ASSIGN_OR_RETURN(const SaeConfig config, ReadSaeConfig(dir));
  absl::StatusOr<HookPoint> point = SaeHookPoint(config, options.hook_point, model_.config());
  if (!point.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.hook_point.empty() ? absl::StrCat(dir, "/cfg.json hook_name: ") : "hook_point: ",
        point.status().message()));
  }
  LENSD_ASSIGN_OR_RETURN(std::unique_ptr<Sae> sae, Sae::Load(dir, dtype, model_.device()));
  Entry entry;
  entry.point = *point;
  SaeDescription& d = entry.description;
  const SaeConfig& c = sae->config();
  d.name = name;
  d.format = c.format;
  d.architecture = ArchitectureName(c.architecture);
  d.hook_point = HookName(*point);
  d.d_in = c.d_in;
  d.d_sae = c.d_sae;
  d.k = c.k;
  d.dtype = DtypeName(sae->dtype());
  d.bytes = sae->bytes();
  d.apply_b_dec_to_input = c.apply_b_dec_to_input;
  d.normalize_activations = NormalizationName(c.normalization);
  d.prepend_bos = c.prepend_bos;
  d.exclude_special_tokens = c.exclude_special_tokens;
  d.model_name = c.model_name;
  d.neuronpedia_id = c.neuronpedia_id;
  entry.sae = std::move(sae);
  absl::MutexLock lock(&mu_);
  if (!saes_.emplace(name, entry).second) {
    return absl::AlreadyExistsError(absl::StrCat("SAE \"", name, "\" is already loaded"));
  }
  return d;
}

absl::StatusOr<int64_t> ServedSaes::Unload(const std::string& name) {
  absl::MutexLock lock(&mu_);
  const auto it = saes_.find(name);
  if (it == saes_.end()) {
    return absl::NotFoundError(absl::StrCat("SAE \"", name, "\" is not loaded"));
  }
  const int64_t bytes = it->second.description.bytes;
  saes_.erase(it);
  return bytes;
}

std::vector<SaeDescription> ServedSaes::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<SaeDescription> out;
  out.reserve(saes_.size());
  for (const auto& [name, entry] : saes_) out.push_back(entry.description);
  return out;
}

absl::StatusOr<int64_t> ServedSaes::EstimateBytes(const std::string& dir,
                                                  const SaeLoadOptions& options) const {
  LENSD_ASSIGN_OR_RETURN(const std::optional<at::ScalarType> dtype, LoadDtype(options));
  LENSD_ASSIGN_OR_RETURN(const SaeConfig config, ReadSaeConfig(dir));
  at::ScalarType type = at::kFloat;
  if (dtype.has_value()) {
    type = *dtype;
  } else {
    LENSD_ASSIGN_OR_RETURN(type, ParseDtype(config.dtype));
  }
  LENSD_ASSIGN_OR_RETURN(const auto file, Checkpoint::OpenFile(WeightsFile(dir, config)));
  return file->FloatElements() * static_cast<int64_t>(c10::elementSize(type));
}

SaeLookup ServedSaes::Lookup() const {
  return [this](const std::string& name)
             -> absl::StatusOr<std::pair<std::shared_ptr<const Sae>, HookPoint>> {
    LENSD_ASSIGN_OR_RETURN(const std::vector<Entry> found, Find({name}, ""));
    return std::make_pair(found.front().sae, found.front().point);
  };
}

absl::StatusOr<std::vector<ServedSaes::Entry>> ServedSaes::Find(
    const std::vector<std::string>& names, const char* field) const {
  absl::MutexLock lock(&mu_);
  std::vector<Entry> out;
  if (names.empty()) {
    for (const auto& [name, entry] : saes_) out.push_back(entry);
    if (out.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          field, ": the model has no SAE loaded; an admin can attach one with LoadSae"));
    }
    return out;
  }
  for (const std::string& name : names) {
    const auto it = saes_.find(name);
    if (it == saes_.end()) {
      std::vector<std::string> loaded;
      loaded.reserve(saes_.size());
      for (const auto& [n, e] : saes_) loaded.push_back(n);
      return absl::NotFoundError(absl::StrCat(
          field, *field == '\0' ? "" : ": ", "SAE \"", name,
          "\" is not loaded for this model (loaded: ", absl::StrJoin(loaded, ", "), ")"));
    }
    out.push_back(it->second);
  }
  return out;
}

std::vector<SaeSite> ServedSaes::Sites(const std::vector<Entry>& entries) {
  std::vector<SaeSite> sites;
  sites.reserve(entries.size());
  for (const Entry& e : entries) sites.push_back({e.description.name, e.sae.get(), e.point});
  return sites;
}

absl::StatusOr<std::vector<SaeEncoding>> ServedSaes::Encode(const EncodeSaeSpec& spec) const {
  LENSD_ASSIGN_OR_RETURN(const std::vector<Entry> entries, Find(spec.saes, "saes"));
  return EncodeSaes(model_, Sites(entries), spec);
}

absl::StatusOr<NodeAttributionOutput> ServedSaes::Attribute(const NodeAttributionSpec& spec,
                                                            const KeepGoing& keep_going) const {
  LENSD_ASSIGN_OR_RETURN(const std::vector<Entry> entries, Find(spec.saes, "saes"));
  if (spec.interventions.empty()) return AttributeNodes(model_, Sites(entries), spec, keep_going);
  LENSD_ASSIGN_OR_RETURN(
      const Interventions edits,
      Interventions::Prepare(model_, spec.interventions,
                             {static_cast<int64_t>(spec.tokens.size()), false}, Lookup()));
  return AttributeNodes(model_, Sites(entries), spec, keep_going, &edits);
}

absl::Status ActivationsWithGradients(
    const CausalLm& model, const ActivationsSpec& spec, const Interventions* interventions,
    const std::function<absl::Status(const std::string&, const at::Tensor&)>& sink) {
  std::vector<HookPoint> points;
  for (const std::string& name : spec.hook_points) {
    LENSD_ASSIGN_OR_RETURN(points.emplace_back(), ParseHookName(name, model.config()));
    if (points.back().kind == HookKind::kMlpExpertIndices) {
      return absl::InvalidArgumentError(
          absl::StrCat("hook_points: ", name,
                       " holds expert numbers (int64), which have no gradient; "
                       "ask for mlp.hook_expert_weights instead"));
    }
  }
  LENSD_ASSIGN_OR_RETURN(ResolvedMetric metric,
                         ResolveMetric(spec.metric, spec.tokens, model.config().vocab_size));
  return CatchTorch("activation gradients", [&]() -> absl::Status {
    Hooks hooks(model.config().num_layers);
    if (interventions != nullptr) interventions->Install(hooks);
    for (const HookPoint& p : points) {
      hooks.Capture(p);
      hooks.CaptureGrad(p);
    }
    ForwardRequest forward;
    forward.tokens = at::tensor(spec.tokens, at::kLong).unsqueeze(0);
    forward.logits = LogitsMode::kAll;
    LENSD_ASSIGN_OR_RETURN(const ForwardResult result, model.Forward(forward, &hooks));
    ResolveTarget(metric, result.logits.detach());
    MetricValues(result.logits, metric).sum().backward();
    c10::NoGradGuard no_grad;
    for (size_t i = 0; i < points.size(); ++i) {
      LENSD_RETURN_IF_ERROR(sink(spec.hook_points[i], hooks.Captured(points[i]).detach()));
      at::Tensor grad = hooks.Grad(points[i]);
      // A point the metric does not depend on has no gradient: it is zero.
      if (!grad.defined()) grad = at::zeros_like(hooks.Captured(points[i]));
      LENSD_RETURN_IF_ERROR(sink(spec.hook_points[i] + ".grad", grad.to(at::kFloat)));
    }
    return absl::OkStatus();
  });
}

}  // namespace lensd::engine
