// Checks each intervention against the model and builds its edit: the field-by-field refusals.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/engine/interventions/intervention_edit.h"
#include "core/engine/model/device.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

using Edit = Interventions::Edit;

const char* OpField(InterventionOp op) {
  switch (op) {
    case InterventionOp::kSet:
      return "set";
    case InterventionOp::kAdd:
      return "add.vector";
    case InterventionOp::kScale:
      return "scale";
    case InterventionOp::kZero:
      return "zero";
    case InterventionOp::kMean:
      return "mean";
    case InterventionOp::kPatch:
      return "patch";
    case InterventionOp::kProjectOut:
      return "project_out";
    case InterventionOp::kKeepOnly:
      return "keep_only";
    case InterventionOp::kSaeClamp:
      return "sae_clamp";
  }
  return "operation";
}

bool PerHead(HookKind kind) {
  switch (kind) {
    case HookKind::kAttnQ:
    case HookKind::kAttnK:
    case HookKind::kAttnV:
    case HookKind::kAttnRotQ:
    case HookKind::kAttnRotK:
    case HookKind::kAttnZ:
    case HookKind::kAttnScores:
    case HookKind::kAttnPattern:
    case HookKind::kMlpExpertOut:  // "heads" are the chosen experts' slots
      return true;
    default:
      return false;
  }
}

bool QueryKey(HookKind kind) {
  return kind == HookKind::kAttnScores || kind == HookKind::kAttnPattern;
}

int64_t HeadsOf(HookKind kind, const ModelConfig& c) {
  if (kind == HookKind::kMlpExpertOut) return c.experts_per_token;
  const bool kv =
      kind == HookKind::kAttnK || kind == HookKind::kAttnV || kind == HookKind::kAttnRotK;
  return kv && c.num_kv_heads > 0 ? c.num_kv_heads : c.num_heads;
}

std::string ShapeText(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Everything Build needs about one spec while it checks it.
struct Checking {
  const CausalLm& model;
  const InterventionSpec& spec;
  const InterventionRun& run;
  std::string field;  // "interventions[i]"
  HookPoint point{HookKind::kResidPre};
  int64_t width = 0;  // per head for per-head points; keys (the run's length) for query-key ones

  absl::Status Invalid(absl::string_view sub, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(field, ".", sub, ": ", what));
  }
  // Whether every selected position lies in the prompt (always, outside Generate).
  bool PromptOnly() const {
    if (!run.generating) return true;
    if (!spec.positions.empty()) {
      return *std::max_element(spec.positions.begin(), spec.positions.end()) < run.length;
    }
    return spec.span == InterventionSpan::kPrompt;
  }
  int64_t LastPosition() const {
    return spec.positions.empty() ? run.length - 1
                                  : *std::max_element(spec.positions.begin(), spec.positions.end());
  }
};

absl::StatusOr<at::Tensor> FromHost(const HostTensor& host, const Checking& c, const char* sub) {
  at::ScalarType type = at::kFloat;
  if (host.dtype == "float16") {
    type = at::kHalf;
  } else if (host.dtype == "bfloat16") {
    type = at::kBFloat16;
  } else if (!host.dtype.empty() && host.dtype != "float32") {
    return c.Invalid(sub,
                     absl::StrCat("dtype \"", host.dtype, "\"; give float32, float16 or bfloat16"));
  }
  int64_t elements = 1;
  for (const int64_t d : host.shape) {
    if (d <= 0 || d > (int64_t{1} << 31)) {
      return c.Invalid(sub, absl::StrCat("shape ", ShapeText(host.shape), " has a size ", d,
                                         "; sizes are 1 or more"));
    }
    elements *= d;
  }
  const auto bytes = static_cast<size_t>(elements) * c10::elementSize(type);
  if (host.data.size() != bytes || elements > (int64_t{1} << 31)) {
    return c.Invalid(
        sub, absl::StrCat(host.data.size(), " data bytes; shape ", ShapeText(host.shape), " of ",
                          host.dtype.empty() ? "float32" : host.dtype, " needs ", bytes));
  }
  at::Tensor t = at::empty(host.shape, at::TensorOptions().dtype(type));
  if (bytes > 0) std::memcpy(t.data_ptr(), host.data.data(), bytes);
  return t;
}

// A tensor that broadcasts to the selection [P, (H), width]; sets edit.tensor(_rows).
absl::Status FitSelection(const at::Tensor& t, const Checking& c, const char* sub, Edit* edit) {
  const int64_t rows =
      c.spec.positions.empty() ? c.run.length : static_cast<int64_t>(c.spec.positions.size());
  std::vector<int64_t> selection{rows};
  if (edit->per_head) selection.push_back(edit->heads.size(0));
  selection.push_back(c.width);
  const auto dims = static_cast<int64_t>(selection.size());
  const std::string wanted = absl::StrCat(
      "a shape broadcasting to the selection ", ShapeText(selection), " (e.g. ",
      ShapeText(at::IntArrayRef(selection).slice(1)), " or ", ShapeText(selection), ")");
  if (t.dim() == 0 || t.dim() > dims) {
    return c.Invalid(sub, absl::StrCat("shape ", ShapeText(t.sizes()), "; give ", wanted));
  }
  for (int64_t i = 1; i <= t.dim(); ++i) {
    const int64_t have = t.size(-i);
    const int64_t want = selection[static_cast<size_t>(dims - i)];
    if (have == 1 || have == want) continue;
    return c.Invalid(sub, absl::StrCat("shape ", ShapeText(t.sizes()), "; give ", wanted));
  }
  edit->tensor_rows = t.dim() == dims && t.size(0) > 1;
  const bool keyed = edit->query_key && t.size(-1) > 1;
  if ((edit->tensor_rows && c.spec.positions.empty()) || keyed) {
    if (!c.PromptOnly()) {
      return c.Invalid(sub,
                       "a tensor with a row per position (or per key) fits the prompt only; "
                       "set span to INTERVENTION_SPAN_PROMPT or give prompt positions");
    }
  }
  edit->tensor = t.to(c.model.device(), c.model.dtype());
  return absl::OkStatus();
}

absl::Status CheckTokens(const std::vector<int64_t>& tokens, const Checking& c,
                         const std::string& sub) {
  const ModelConfig& config = c.model.config();
  if (tokens.empty()) return c.Invalid(sub, "no tokens");
  for (const int64_t id : tokens) {
    if (id < 0 || id >= config.vocab_size) {
      return c.Invalid(sub,
                       absl::StrCat("token id ", id, " out of range 0..", config.vocab_size - 1));
    }
  }
  if (config.absolute_positions && static_cast<int64_t>(tokens.size()) > config.max_positions) {
    return c.Invalid(sub, absl::StrCat(tokens.size(), " tokens exceed the model's context of ",
                                       config.max_positions));
  }
  return absl::OkStatus();
}

// Sources must cover every selected position (positions align); keyed points need equal lengths.
absl::Status CheckSources(const Checking& c, const Edit& edit) {
  const InterventionSpec& s = c.spec;
  const bool patch = s.op == InterventionOp::kPatch;
  if (patch && s.inputs.size() != 1) return c.Invalid("patch", "give one source input");
  for (size_t j = 0; j < s.inputs.size(); ++j) {
    const std::string sub = patch ? "patch" : absl::StrCat("mean.reference[", j, "]");
    LENSD_RETURN_IF_ERROR(CheckTokens(s.inputs[j], c, sub));
    const auto n = static_cast<int64_t>(s.inputs[j].size());
    if (edit.query_key && (n != c.run.length || !c.PromptOnly())) {
      return c.Invalid(sub, absl::StrCat(n, " tokens; ", HookName(c.point),
                                         " has a key per position, so the source needs the "
                                         "input's length (",
                                         c.run.length, ") and prompt positions only"));
    }
    if (!patch && !s.per_position) continue;
    if (!c.PromptOnly()) {
      return c.Invalid(sub,
                       "a source covers the prompt's positions only; set span to "
                       "INTERVENTION_SPAN_PROMPT or give prompt positions");
    }
    if (patch && s.positions.empty() && n != c.run.length) {
      return c.Invalid(sub, absl::StrCat(n, " tokens where the input has ", c.run.length,
                                         "; positions align, so give a source of ", c.run.length,
                                         " tokens or explicit positions below ", n));
    }
    if (c.LastPosition() >= n) {
      return c.Invalid(sub, absl::StrCat(n, " tokens do not reach position ", c.LastPosition(),
                                         "; positions align, so the source needs ",
                                         c.LastPosition() + 1, " or more"));
    }
  }
  return absl::OkStatus();
}

absl::Status BuildProjection(const Checking& c, Edit* edit) {
  const char* sub = OpField(c.spec.op);
  if (edit->query_key) return c.Invalid(sub, "scores and patterns cannot be projected");
  LENSD_ASSIGN_OR_RETURN(at::Tensor d, FromHost(c.spec.tensor, c, sub));
  if (d.dim() == 1) d = d.unsqueeze(0);
  if (d.dim() != 2 || d.size(1) != c.width || d.size(0) > c.width) {
    return c.Invalid(sub, absl::StrCat("shape ", ShapeText(d.sizes()), "; give directions [k, ",
                                       c.width, "] with k <= ", c.width));
  }
  const auto [q, r] = at::linalg_qr(d.to(at::kDouble).t());
  const at::Tensor diag = r.diagonal().abs();
  if (diag.min().item<double>() <= 1e-6 * std::max(1.0, diag.max().item<double>())) {
    return c.Invalid(sub, "the directions are zero or linearly dependent");
  }
  edit->basis = q.to(c.model.device(), at::kFloat);
  return absl::OkStatus();
}

absl::Status BuildSaeClamp(const Checking& c, const SaeLookup& saes, Edit* edit) {
  const InterventionSpec& s = c.spec;
  if (!saes) return absl::NotFoundError(absl::StrCat(c.field, ".sae_clamp.sae: no SAE is loaded"));
  auto found = saes(s.sae);
  if (!found.ok()) {
    return absl::Status(found.status().code(),
                        absl::StrCat(c.field, ".sae_clamp.sae: ", found.status().message()));
  }
  edit->sae = found->first;
  if (!(found->second == c.point)) {
    return c.Invalid("hook_point",
                     absl::StrCat("SAE \"", s.sae, "\" reads ", HookName(found->second),
                                  "; leave hook_point empty or give that"));
  }
  if (!s.heads.empty()) return c.Invalid("heads", "an SAE clamp edits every head");
  const int64_t d_sae = edit->sae->config().d_sae;
  if (s.feature < 0 || s.feature >= d_sae) {
    return c.Invalid("sae_clamp.feature",
                     absl::StrCat("feature ", s.feature, " out of range 0..", d_sae - 1));
  }
  edit->feature = s.feature;
  return absl::OkStatus();
}

absl::Status BuildOperation(const Checking& c, const SaeLookup& saes, Edit* edit) {
  const InterventionSpec& s = c.spec;
  const char* sub = OpField(s.op);
  switch (s.op) {
    case InterventionOp::kSet:
    case InterventionOp::kAdd: {
      LENSD_ASSIGN_OR_RETURN(const at::Tensor t, FromHost(s.tensor, c, sub));
      return FitSelection(t, c, sub, edit);
    }
    case InterventionOp::kMean:
      if (!s.tensor.empty() && !s.inputs.empty()) {
        return c.Invalid("mean", "give either the mean (value) or reference inputs, not both");
      }
      if (!s.tensor.empty()) {
        LENSD_ASSIGN_OR_RETURN(const at::Tensor t, FromHost(s.tensor, c, "mean.value"));
        return FitSelection(t, c, "mean.value", edit);
      }
      if (s.inputs.empty()) return c.Invalid("mean", "give the mean (value) or reference inputs");
      if (edit->query_key && !s.per_position) {
        return c.Invalid("mean.per_position", "scores and patterns are averaged per position");
      }
      return CheckSources(c, *edit);
    case InterventionOp::kPatch:
      return CheckSources(c, *edit);
    case InterventionOp::kProjectOut:
    case InterventionOp::kKeepOnly:
      return BuildProjection(c, edit);
    case InterventionOp::kSaeClamp:
      return BuildSaeClamp(c, saes, edit);
    case InterventionOp::kScale:
    case InterventionOp::kZero:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status CheckSelection(const Checking& c, int64_t heads) {
  const InterventionSpec& s = c.spec;
  if (s.span == InterventionSpan::kGenerated && !c.run.generating) {
    return c.Invalid("span", "INTERVENTION_SPAN_GENERATED applies to Generate only");
  }
  const int64_t limit = c.run.generating ? std::numeric_limits<int64_t>::max() : c.run.length;
  std::set<int64_t> seen;
  for (const int64_t p : s.positions) {
    if (p < 0 || p >= limit) {
      return c.Invalid("positions",
                       absl::StrCat("position ", p, " out of range: the input has positions 0..",
                                    c.run.length - 1));
    }
    if (!seen.insert(p).second)
      return c.Invalid("positions", absl::StrCat("position ", p, " given twice"));
  }
  seen.clear();
  if (!s.heads.empty() && heads == 0) {
    return c.Invalid("heads", absl::StrCat(HookName(c.point),
                                           " has no heads; heads apply to attn.hook_q, "
                                           "hook_k, hook_v, hook_rot_q, hook_rot_k, hook_z, "
                                           "hook_attn_scores, hook_pattern and, as the chosen "
                                           "experts, mlp.hook_expert_out"));
  }
  for (const int64_t h : s.heads) {
    if (h < 0 || h >= heads) {
      return c.Invalid("heads", absl::StrCat("head ", h, " out of range: ", HookName(c.point),
                                             " has heads 0..", heads - 1));
    }
    if (!seen.insert(h).second) return c.Invalid("heads", absl::StrCat("head ", h, " given twice"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<Edit>> BuildEdit(const CausalLm& model, const InterventionSpec& spec,
                                                size_t index, const InterventionRun& run,
                                                const SaeLookup& saes) {
  Checking c{model, spec, run, absl::StrCat("interventions[", index, "]")};
  const ModelConfig& config = model.config();
  if (spec.op == InterventionOp::kSaeClamp && spec.hook_point.empty()) {
    if (!saes) {
      return absl::NotFoundError(absl::StrCat(c.field, ".sae_clamp.sae: no SAE is loaded"));
    }
    auto found = saes(spec.sae);
    if (!found.ok()) {
      return absl::Status(found.status().code(),
                          absl::StrCat(c.field, ".sae_clamp.sae: ", found.status().message()));
    }
    c.point = found->second;
  } else if (spec.hook_point.empty()) {
    return c.Invalid("hook_point", "name a TransformerLens hook point (GetModel lists them)");
  }
  if (!spec.hook_point.empty()) {
    auto point = ParseHookName(spec.hook_point, config);
    if (!point.ok()) return c.Invalid("hook_point", point.status().message());
    c.point = *point;
  }
  if (c.point.kind == HookKind::kMlpExpertIndices) {
    return c.Invalid("hook_point",
                     "mlp.hook_expert_indices is read-only (the experts chosen); edit "
                     "mlp.hook_router_logits or mlp.hook_expert_weights to change the choice, or "
                     "mlp.hook_expert_out to change what a chosen expert adds");
  }
  auto edit = std::make_shared<Edit>();
  edit->point = c.point;
  edit->op = spec.op;
  edit->span = spec.span;
  edit->positions = spec.positions;
  edit->prompt_length = run.length;
  edit->per_head = PerHead(c.point.kind);
  edit->query_key = QueryKey(c.point.kind);
  edit->number = spec.number;
  const int64_t heads = edit->per_head ? HeadsOf(c.point.kind, config) : 0;
  LENSD_RETURN_IF_ERROR(CheckSelection(c, heads));
  if (edit->per_head) {
    edit->heads =
        spec.heads.empty() ? at::arange(heads, at::kLong) : at::tensor(spec.heads, at::kLong);
    edit->heads = edit->heads.to(model.device());
  }
  c.width = edit->query_key                           ? run.length
            : c.point.kind == HookKind::kMlpExpertOut ? config.d_model
            : edit->per_head                          ? config.head_dim
                                                      : HookShapeOf(c.point, config).per_position;
  LENSD_RETURN_IF_ERROR(BuildOperation(c, saes, edit.get()));
  return edit;
}

}  // namespace lensd::engine
