#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/engine/attribution/activation_patching.h"
#include "core/engine/interventions/interventions.h"
#include "core/engine/lens/decode.h"
#include "core/engine/lens/generate.h"
#include "core/engine/lens/lens.h"
#include "core/engine/lens/lens_evaluation.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/device.h"
#include "core/engine/model/hook_names.h"
#include "core/engine/model/torch_errors.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/served/engine_factory.h"
#include "core/engine/served/served_batch.h"
#include "core/engine/served/served_saes.h"
#include "core/engine/training/lens_training_run.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

HostTensor ToHost(const at::Tensor& value) {
  const at::Tensor t = value.contiguous().cpu();
  HostTensor out;
  out.dtype = DtypeName(t.scalar_type());
  if (t.scalar_type() == at::kLong) out.dtype = "int64";
  if (t.scalar_type() == at::kInt) out.dtype = "int32";
  out.shape.assign(t.sizes().begin(), t.sizes().end());
  out.data.assign(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

class ServedModelImpl : public ServedModel {
 public:
  explicit ServedModelImpl(std::unique_ptr<CausalLm> model)
      : model_(std::move(model)), saes_(*model_) {
    const ModelConfig& c = model_->config();
    info_.architecture = c.model_type;
    info_.num_layers = c.num_layers;
    info_.d_model = c.d_model;
    info_.num_heads = c.num_heads;
    info_.vocab_size = c.vocab_size;
    info_.max_positions = c.absolute_positions ? c.max_positions : 0;
    info_.absolute_positions = c.absolute_positions;
    info_.dtype = DtypeName(model_->dtype());
    info_.device = model_->device().str();
    if (info_.device == "cuda") info_.device = "cuda:0";
    info_.parameter_bytes = model_->parameter_bytes();
    info_.eos_token_ids = c.eos_token_ids;
    for (const HookPoint& p : AllHookPoints(c)) {
      info_.hook_points.push_back(HookName(p));
      const HookShape shape = HookShapeOf(p, c);
      info_.hook_widths.push_back(shape.per_position);
      info_.hook_per_key_position.push_back(shape.per_key_position);
    }
    lenses_["logit"] = std::make_shared<LogitLens>();
  }

  const ServedModelInfo& info() const override { return info_; }

  absl::StatusOr<LensDescription> LoadLens(const std::string& name,
                                           const std::string& dir) override {
    {
      absl::MutexLock lock(&mu_);
      if (lenses_.count(name) > 0) {
        return absl::AlreadyExistsError(absl::StrCat("lens \"", name, "\" is already loaded"));
      }
    }
    LENSD_ASSIGN_OR_RETURN(std::shared_ptr<const Lens> lens, TunedLens::Load(dir, *model_, name));
    absl::MutexLock lock(&mu_);
    if (!lenses_.emplace(name, lens).second) {
      return absl::AlreadyExistsError(absl::StrCat("lens \"", name, "\" is already loaded"));
    }
    return Describe(name, *lens);
  }

  absl::StatusOr<int64_t> UnloadLens(const std::string& name) override {
    if (name == "logit") {
      return absl::InvalidArgumentError(
          "lens: the logit lens is part of the model; unload the "
          "model instead");
    }
    absl::MutexLock lock(&mu_);
    const auto it = lenses_.find(name);
    if (it == lenses_.end())
      return absl::NotFoundError(absl::StrCat("lens \"", name, "\" is not loaded"));
    const int64_t bytes = Describe(name, *it->second).bytes;
    lenses_.erase(it);
    return bytes;
  }

  std::vector<LensDescription> Lenses() const override {
    absl::MutexLock lock(&mu_);
    std::vector<LensDescription> out;
    out.reserve(lenses_.size());
    for (const auto& [name, lens] : lenses_) out.push_back(Describe(name, *lens));
    return out;
  }

  absl::StatusOr<int64_t> EstimateLensBytes(const std::string& dir) const override {
    const int64_t d = info_.d_model;
    return info_.num_layers * (d * d + d) * static_cast<int64_t>(c10::elementSize(model_->dtype()));
  }

  absl::Status ValidateDecode(const DecodeSpec& spec) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.tokens, "input"));
    LENSD_RETURN_IF_ERROR(FindLens(spec.lens, "lens").status());
    if (!spec.compare_lens.empty())
      LENSD_RETURN_IF_ERROR(FindLens(spec.compare_lens, "compare_lens").status());
    LENSD_RETURN_IF_ERROR(ValidateDecodeSpec(model_->config(), spec));
    return ValidateInterventions(spec.interventions, static_cast<int64_t>(spec.tokens.size()),
                                 /*generating=*/false);
  }

  absl::Status ValidateInterventions(const std::vector<InterventionSpec>& specs, int64_t length,
                                     bool generating) const override {
    if (specs.empty()) return absl::OkStatus();
    return Interventions::Validate(*model_, specs, {length, generating}, saes_.Lookup());
  }

  absl::StatusOr<std::vector<DecodeOutput>> Decode(absl::Span<const DecodeSpec* const> batch,
                                                   const KeepGoing& keep_going,
                                                   const HostLogProbSink& sink) const override {
    if (batch.empty()) return std::vector<DecodeOutput>{};
    for (const DecodeSpec* spec : batch) LENSD_RETURN_IF_ERROR(ValidateDecode(*spec));
    const DecodeSpec& first = *batch.front();
    if (batch.size() > 1 && !first.interventions.empty()) {
      return absl::InternalError("decode: an edited request was batched with others");
    }
    LENSD_ASSIGN_OR_RETURN(const Interventions edits, Prepare(first.interventions, first.tokens));
    LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const Lens> lens, FindLens(first.lens, "lens"));
    std::shared_ptr<const Lens> compare;
    if (!first.compare_lens.empty()) {
      LENSD_ASSIGN_OR_RETURN(compare, FindLens(first.compare_lens, "compare_lens"));
    }
    return CatchTorch(
        absl::StrCat("decode on ", info_.architecture),
        [&]() -> absl::StatusOr<std::vector<DecodeOutput>> {
          BatchedDecode run(*model_, batch);
          run.request().compare = compare.get();
          run.request().keep_going = keep_going;
          run.request().interventions = edits.empty() ? nullptr : &edits;
          LogProbSink row_sink;
          if (sink) {
            row_sink = [&](int64_t layer, const at::Tensor& log_probs) {
              for (size_t i = 0; i < batch.size(); ++i) {
                LENSD_RETURN_IF_ERROR(sink(i, layer, ToHost(run.Slice(log_probs, i))));
              }
              return absl::OkStatus();
            };
          }
          LENSD_ASSIGN_OR_RETURN(const DecodeResult result,
                                 engine::Decode(*model_, *lens, run.request(), row_sink));
          return run.Split(result);
        });
  }

  absl::StatusOr<GenerateOutput> Generate(
      const GenerateSpec& spec,
      const std::function<absl::Status(int64_t, int64_t)>& on_token) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.tokens, "input"));
    LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const Lens> lens, FindLens(spec.lens, "lens"));
    LENSD_ASSIGN_OR_RETURN(const Interventions edits,
                           Prepare(spec.interventions, spec.tokens, /*generating=*/true));
    return CatchTorch("generate", [&]() -> absl::StatusOr<GenerateOutput> {
      GenerateRequest r;
      r.interventions = edits.empty() ? nullptr : &edits;
      r.tokens = at::tensor(spec.tokens, at::kLong).unsqueeze(0);
      r.layer = spec.layer < 0 ? info_.num_layers : spec.layer;
      r.max_new_tokens = spec.max_new_tokens;
      r.greedy = spec.greedy;
      r.temperature = spec.temperature;
      r.top_k = spec.top_k;
      r.top_p = spec.top_p;
      r.seed = spec.seed;
      r.stop_tokens = spec.stop_tokens;
      r.stop_at_eos = spec.stop_at_eos;
      r.early_exit = spec.early_exit;
      StepSink step;
      if (on_token) {
        step = [&](int64_t i, const std::vector<int64_t>& tokens) {
          return tokens[0] >= 0 ? on_token(i, tokens[0]) : absl::OkStatus();
        };
      }
      LENSD_ASSIGN_OR_RETURN(GenerateResult result, engine::Generate(*model_, *lens, r, step));
      GenerateOutput out{std::move(result.tokens[0]), result.finish_reasons[0]};
      if (spec.also_unedited) {
        r.interventions = nullptr;  // the same sampler seed: only the edits differ
        LENSD_ASSIGN_OR_RETURN(GenerateResult plain, engine::Generate(*model_, *lens, r));
        out.unedited_tokens = std::move(plain.tokens[0]);
        out.unedited_finish_reason = plain.finish_reasons[0];
      }
      return out;
    });
  }

  absl::StatusOr<TrainLensResult> TrainLens(const TrainLensRun& run) const override {
    std::shared_ptr<const Lens> warm;
    if (!run.spec.warm_start.empty()) {
      auto found = FindLens(run.spec.warm_start, "warm_start");
      if (!found.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat(found.status().message(), "; load the warm-start lens first"));
      }
      warm = *std::move(found);
    }
    const auto* tuned = dynamic_cast<const TunedLens*>(warm.get());
    if (warm != nullptr && tuned == nullptr) {
      return absl::InvalidArgumentError("warm_start: the logit lens has no translators; omit it");
    }
    return RunLensTraining(*model_, tuned, run);
  }

  absl::StatusOr<LensMetrics> EvaluateLenses(const EvalLensRun& run) const override {
    std::vector<std::shared_ptr<const Lens>> held;
    std::vector<std::pair<std::string, const Lens*>> lenses;
    for (const std::string& name : run.spec.lenses) {
      LENSD_ASSIGN_OR_RETURN(held.emplace_back(), FindLens(name, "lenses"));
      lenses.emplace_back(name, held.back().get());
    }
    const int64_t sequences = std::min<int64_t>(
        run.spec.num_batches(static_cast<int64_t>(run.order.size())) * run.spec.batch,
        static_cast<int64_t>(run.order.size()));
    if (sequences == 0 || run.tokens == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("data: no sequence of ", run.seq_len,
                                                     " tokens to evaluate; give more text"));
    }
    return CatchTorch("lens evaluation", [&]() -> absl::StatusOr<LensMetrics> {
      const at::Tensor all = at::from_blob(const_cast<int32_t*>(run.tokens->data()),
                                           {static_cast<int64_t>(run.tokens->size())}, at::kInt)
                                 .view({-1, run.seq_len});
      const at::Tensor order = at::tensor(
          std::vector<int64_t>(run.order.begin(), run.order.begin() + sequences), at::kLong);
      return engine::EvaluateLenses(*model_, lenses, all.index_select(0, order), run.spec.batch,
                                    run.spec.token_shift, run.keep_going, run.on_batch);
    });
  }

  absl::StatusOr<SaeDescription> LoadSae(const std::string& name, const std::string& dir,
                                         const SaeLoadOptions& options) override {
    return saes_.Load(name, dir, options);
  }
  absl::StatusOr<int64_t> UnloadSae(const std::string& name) override { return saes_.Unload(name); }
  std::vector<SaeDescription> Saes() const override { return saes_.List(); }
  absl::StatusOr<int64_t> EstimateSaeBytes(const std::string& dir,
                                           const SaeLoadOptions& options) const override {
    return saes_.EstimateBytes(dir, options);
  }

  absl::StatusOr<std::vector<SaeEncoding>> EncodeSae(const EncodeSaeSpec& spec) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.tokens, "input"));
    return saes_.Encode(spec);
  }

  absl::StatusOr<NodeAttributionOutput> AttributeNodes(const NodeAttributionSpec& spec,
                                                       const KeepGoing& keep_going) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.tokens, "input"));
    if (spec.baseline == AttributionBaseline::kPatch) {
      LENSD_RETURN_IF_ERROR(ValidateTokens(spec.patch_tokens, "patch"));
    }
    for (const std::vector<int64_t>& reference : spec.reference) {
      LENSD_RETURN_IF_ERROR(ValidateTokens(reference, "reference"));
    }
    return saes_.Attribute(spec, keep_going);
  }

  absl::StatusOr<LayerAttributionOutput> AttributeLayers(
      const LayerAttributionSpec& spec) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.tokens, "input"));
    LENSD_ASSIGN_OR_RETURN(const Interventions edits, Prepare(spec.interventions, spec.tokens));
    return engine::AttributeLayers(*model_, spec, edits.empty() ? nullptr : &edits);
  }

  absl::StatusOr<ActivationPatchingOutput> PatchActivations(
      const ActivationPatchingSpec& spec, const PatchingProgress& progress) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.clean, "clean"));
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.corrupted, "corrupted"));
    return engine::PatchActivations(*model_, spec, progress);
  }

  absl::Status ValidatePatching(const ActivationPatchingSpec& spec) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.clean, "clean"));
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.corrupted, "corrupted"));
    return engine::ValidatePatching(*model_, spec);
  }

  absl::Status ValidateHookPoints(const std::vector<std::string>& names) const override {
    for (const std::string& name : names) {
      LENSD_RETURN_IF_ERROR(ParseHookName(name, model_->config()).status());
    }
    return absl::OkStatus();
  }

  absl::Status Activations(
      const ActivationsSpec& spec,
      const std::function<absl::Status(const std::string&, HostTensor)>& sink) const override {
    LENSD_RETURN_IF_ERROR(ValidateTokens(spec.tokens, "input"));
    LENSD_ASSIGN_OR_RETURN(const Interventions edits, Prepare(spec.interventions, spec.tokens));
    const Interventions* edited = edits.empty() ? nullptr : &edits;
    if (spec.gradients) {
      return ActivationsWithGradients(
          *model_, spec, edited, [&](const std::string& name, const at::Tensor& value) {
            return sink(name, ToHost(spec.native_dtype ? value : value.to(at::kFloat)));
          });
    }
    std::vector<HookPoint> points;
    for (const std::string& name : spec.hook_points) {
      LENSD_ASSIGN_OR_RETURN(points.emplace_back(), ParseHookName(name, model_->config()));
    }
    return CatchTorch("activations", [&]() -> absl::Status {
      LENSD_ASSIGN_OR_RETURN(
          const std::vector<at::Tensor> captured,
          CaptureHookPoints(*model_, points, at::tensor(spec.tokens, at::kLong).unsqueeze(0),
                            edited));
      c10::InferenceMode inference;
      for (size_t i = 0; i < points.size(); ++i) {
        at::Tensor value = captured[i];
        if (!spec.native_dtype && value.is_floating_point()) value = value.to(at::kFloat);
        LENSD_RETURN_IF_ERROR(sink(spec.hook_points[i], ToHost(value)));
      }
      return absl::OkStatus();
    });
  }

 private:
  absl::StatusOr<Interventions> Prepare(const std::vector<InterventionSpec>& specs,
                                        const std::vector<int64_t>& tokens,
                                        bool generating = false) const {
    if (specs.empty()) return Interventions();
    return Interventions::Prepare(*model_, specs, {static_cast<int64_t>(tokens.size()), generating},
                                  saes_.Lookup());
  }

  absl::Status ValidateTokens(const std::vector<int64_t>& tokens, const char* field) const {
    if (tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": no tokens"));
    for (const int64_t id : tokens) {
      if (id < 0 || id >= info_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": token id ", id, " out of range 0..", info_.vocab_size - 1));
      }
    }
    if (info_.absolute_positions && static_cast<int64_t>(tokens.size()) > info_.max_positions) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", tokens.size(),
                                                     " tokens exceed the model's context of ",
                                                     info_.max_positions, " positions"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::shared_ptr<const Lens>> FindLens(const std::string& name,
                                                       const char* field) const {
    absl::MutexLock lock(&mu_);
    const auto it = lenses_.find(name);
    if (it == lenses_.end()) {
      std::string loaded;
      for (const auto& [n, l] : lenses_) absl::StrAppend(&loaded, loaded.empty() ? "" : ", ", n);
      return absl::NotFoundError(absl::StrCat(
          field, ": lens \"", name, "\" is not loaded for this model (loaded: ", loaded, ")"));
    }
    return it->second;
  }

  LensDescription Describe(const std::string& name, const Lens& lens) const {
    LensDescription d{name, lens.kind(), 0, ""};
    if (const auto* tuned = dynamic_cast<const TunedLens*>(&lens)) {
      d.bytes = static_cast<int64_t>(tuned->weights().nbytes() + tuned->biases().nbytes());
      d.base_model = tuned->config().base_model;
    }
    return d;
  }

  std::unique_ptr<const CausalLm> model_;
  ServedModelInfo info_;
  ServedSaes saes_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const Lens>> lenses_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServedModel>> LoadServedModel(const std::string& dir,
                                                             const ServedModelOptions& options) {
  LENSD_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> model,
                         LoadModel(dir, {options.dtype.empty() ? "float32" : options.dtype,
                                         options.device.empty() ? "cpu" : options.device}));
  return std::unique_ptr<ServedModel>(new ServedModelImpl(std::move(model)));
}

}  // namespace lensd::engine
