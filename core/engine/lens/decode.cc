#include "core/engine/lens/decode.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/interventions/interventions.h"
#include "core/engine/lens/decode_contract.h"
#include "core/engine/lens/row_stats.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

// Target or anti-target ids [batch, t] of a batched request, each row as the contract checks it.
absl::Status CheckIds(const at::Tensor& ids, const at::Tensor& tokens, const char* field,
                      int64_t vocab) {
  if (!ids.defined()) return absl::OkStatus();
  if (ids.sizes() != tokens.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": needs the shape of tokens"));
  }
  const at::Tensor rows = ids.to(at::kCPU, at::kLong).contiguous();
  const int64_t t = rows.size(1);
  for (int64_t b = 0; b < rows.size(0); ++b) {
    const int64_t* row = rows[b].data_ptr<int64_t>();
    LENSD_RETURN_IF_ERROR(CheckTargetIds(std::vector<int64_t>(row, row + t), t, field, vocab));
  }
  return absl::OkStatus();
}

absl::Status Validate(const CausalLm& model, const DecodeRequest& r, std::vector<int64_t>* layers,
                      std::vector<int64_t>* positions) {
  const ModelConfig& c = model.config();
  if (!r.tokens.defined() || r.tokens.dim() != 2 || r.tokens.size(1) < 1) {
    return absl::InvalidArgumentError("tokens: needs a non-empty [batch, length] tensor");
  }
  const int64_t t = r.tokens.size(1);
  LENSD_RETURN_IF_ERROR(
      CheckDecodeFields(c, {r.layers, r.positions, t, r.top_k, r.readout, r.statistics,
                            r.include_output, r.anti_targets.defined()}));
  *layers = r.layers;
  if (layers->empty()) {
    for (int64_t l = 0; l < c.num_layers; ++l) layers->push_back(l);
  }
  *positions = r.positions;
  if (positions->empty()) {
    for (int64_t p = 0; p < t; ++p) positions->push_back(p);
  }
  LENSD_RETURN_IF_ERROR(CheckIds(r.targets, r.tokens, "targets", c.vocab_size));
  LENSD_RETURN_IF_ERROR(CheckIds(r.anti_targets, r.tokens, "anti_targets", c.vocab_size));
  return absl::OkStatus();
}

// The contract's default targets (DefaultTargets) of each row's real tokens, in their places;
// -1 on padding.
at::Tensor DefaultTargetsOf(const at::Tensor& tokens, const at::Tensor& valid,
                            const std::vector<int64_t>& eos) {
  const at::Tensor ids = tokens.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor real = valid.to(at::kCPU, at::kBool).contiguous();
  at::Tensor out = at::full(ids.sizes(), -1, ids.options());
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const at::Tensor where = real[b].nonzero().squeeze(1);
    if (where.numel() == 0) continue;
    const at::Tensor row = ids[b].index_select(0, where).contiguous();
    const int64_t* data = row.data_ptr<int64_t>();
    const std::vector<int64_t> targets =
        DefaultTargets(std::vector<int64_t>(data, data + row.numel()), eos);
    out[b].index_copy_(0, where, at::tensor(targets, at::kLong));
  }
  return out.to(tokens.device());
}

// Fills row `r` of every requested output from one row's logits [batch, positions, vocab].
class RowWriter {
 public:
  RowWriter(const DecodeRequest& request, DecodeResult* out, const at::Tensor& targets,
            const at::Tensor& anti_targets)
      : request_(request), out_(out), targets_(targets), anti_(anti_targets) {}

  // The model's own row, written first: it gives the weights of every row's forward KL.
  void SetModel(const at::Tensor& model_logits) {
    const RowStats s = Stats(model_logits, at::Tensor());
    model_probs_ = (Flat(model_logits) - s.log_normalizer.unsqueeze(-1)).exp();
    model_neg_entropy_ = -s.entropy;
  }

  // Returns the row's log-probabilities when `want_log_probs`.
  at::Tensor Write(int64_t r, const at::Tensor& logits, bool is_model, const at::Tensor& other,
                   bool want_log_probs) {
    const uint32_t s = request_.statistics;
    const bool forward_kl = (s & kForwardKl) && !is_model;
    const RowStats stats = Stats(logits, forward_kl ? model_probs_ : at::Tensor(), request_.top_k);
    const at::Tensor lse = stats.log_normalizer.view(Shape());
    const auto put = [&](at::Tensor& field, const at::Tensor& value) {
      field.select(1, r).copy_(value.view(Shape()));
    };
    if (request_.top_k > 0) {
      const std::vector<int64_t> shape = {targets_.size(0), targets_.size(1), -1};
      out_->top_probs.select(1, r).copy_((stats.top_logits.view(shape) - lse.unsqueeze(-1)).exp());
      out_->top_ids.select(1, r).copy_(stats.top_ids.view(shape));
    }
    if (s & kEntropy) put(out_->entropy, stats.entropy);
    if (s & kForwardKl) {
      put(out_->forward_kl,
          is_model ? at::zeros_like(stats.entropy) : model_neg_entropy_ - stats.cross_with);
    }
    if (s & kMaxProbability)
      put(out_->max_probability, (stats.max_logit - stats.log_normalizer).exp());
    if (s & kCrossEntropy) put(out_->cross_entropy, stats.log_normalizer - stats.target_logit);
    if (s & kTargetRank) put(out_->target_rank, stats.rank);
    if (s & kLogProbDiff) {
      const at::Tensor flat = Flat(logits);
      const at::Tensor ids = anti_.reshape({-1});
      const at::Tensor anti_logit = flat.gather(-1, ids.clamp_min(0).unsqueeze(-1)).squeeze(-1);
      const at::Tensor diff = stats.target_logit - anti_logit;
      put(out_->log_prob_diff,
          at::where(ids >= 0, diff, at::full_like(diff, std::numeric_limits<float>::quiet_NaN())));
    }
    at::Tensor logp;
    if (want_log_probs || other.defined()) logp = logits - lse.unsqueeze(-1);
    if (other.defined()) {
      const at::Tensor p = logp.exp();
      const at::Tensor po = other.exp();
      const at::Tensor kl = (p * (logp - other)).sum(-1);
      out_->kl_to_other.select(1, r).copy_(kl);
      out_->symmetric_kl.select(1, r).copy_(0.5 * kl + 0.5 * (po * (other - logp)).sum(-1));
      out_->max_abs_prob_diff.select(1, r).copy_(std::get<0>((p - po).abs().max(-1)));
    }
    return logp;
  }

 private:
  std::vector<int64_t> Shape() const { return {targets_.size(0), targets_.size(1)}; }
  static at::Tensor Flat(const at::Tensor& logits) { return logits.reshape({-1, logits.size(-1)}); }
  RowStats Stats(const at::Tensor& logits, const at::Tensor& weights, int64_t top_k = 0) const {
    const bool need_target = request_.statistics & (kCrossEntropy | kTargetRank | kLogProbDiff);
    return ComputeRowStats(Flat(logits), weights,
                           need_target ? targets_.reshape({-1}) : at::Tensor(), top_k);
  }

  const DecodeRequest& request_;
  DecodeResult* out_;
  at::Tensor targets_, anti_;
  at::Tensor model_probs_;        // [batch * positions, vocab]
  at::Tensor model_neg_entropy_;  // [batch * positions]
};

void Allocate(const DecodeRequest& r, int64_t batch, int64_t rows, int64_t cols, at::Device device,
              DecodeResult* out) {
  const auto f = at::TensorOptions().dtype(at::kFloat).device(device);
  const auto make = [&](uint32_t flag, at::Tensor* t) {
    if (r.statistics & flag) *t = at::zeros({batch, rows, cols}, f);
  };
  if (r.top_k > 0) {
    out->top_probs = at::zeros({batch, rows, cols, r.top_k}, f);
    out->top_ids = at::zeros({batch, rows, cols, r.top_k}, f.dtype(at::kLong));
  }
  make(kEntropy, &out->entropy);
  make(kForwardKl, &out->forward_kl);
  make(kCrossEntropy, &out->cross_entropy);
  make(kMaxProbability, &out->max_probability);
  make(kLogProbDiff, &out->log_prob_diff);
  if (r.statistics & kTargetRank)
    out->target_rank = at::zeros({batch, rows, cols}, f.dtype(at::kLong));
  if (r.compare != nullptr) {
    out->kl_to_other = at::zeros({batch, rows, cols}, f);
    out->symmetric_kl = at::zeros({batch, rows, cols}, f);
    out->max_abs_prob_diff = at::zeros({batch, rows, cols}, f);
  }
}

void MoveToCpu(DecodeResult* out) {
  for (at::Tensor* t :
       {&out->top_ids, &out->top_probs, &out->entropy, &out->forward_kl, &out->cross_entropy,
        &out->target_rank, &out->max_probability, &out->log_prob_diff, &out->kl_to_other,
        &out->symmetric_kl, &out->max_abs_prob_diff}) {
    if (t->defined()) *t = t->cpu();
  }
}

}  // namespace

absl::StatusOr<DecodeResult> Decode(const CausalLm& model, const Lens& lens,
                                    const DecodeRequest& request, const LogProbSink& sink) {
  DecodeResult out;
  LENSD_RETURN_IF_ERROR(Validate(model, request, &out.rows, &out.positions));
  const std::vector<int64_t> layers = out.rows;
  const ModelConfig& c = model.config();
  return CatchTorch("decode", [&]() -> absl::StatusOr<DecodeResult> {
    c10::InferenceMode inference;
    const HookKind kind =
        request.readout == Readout::kResidMid ? HookKind::kResidMid : HookKind::kResidPre;
    if (request.keep_going) LENSD_RETURN_IF_ERROR(request.keep_going());
    Hooks hooks(c.num_layers);
    if (request.interventions != nullptr) request.interventions->Install(hooks);
    for (const int64_t l : layers) hooks.Capture({kind, l});
    const bool need_model = request.include_output || (request.statistics & kForwardKl);
    // Without the model's own predictions, the blocks after the last read-out need not run.
    const int64_t stop = need_model ? -1 : *std::max_element(layers.begin(), layers.end()) + 1;
    LENSD_ASSIGN_OR_RETURN(
        const ForwardResult forward,
        model.Forward({request.tokens, request.attention_mask, {}, stop, LogitsMode::kNone},
                      &hooks));
    const at::Device device = model.device();
    const at::Tensor columns = at::tensor(out.positions, at::kLong).to(device);
    const at::Tensor tokens = request.tokens.to(device, at::kLong);
    const at::Tensor valid = request.attention_mask.defined()
                                 ? request.attention_mask.to(device).ne(0)
                                 : at::ones_like(tokens, at::kBool);
    const at::Tensor all_targets = request.targets.defined()
                                       ? request.targets.to(device, at::kLong)
                                       : DefaultTargetsOf(tokens, valid, c.eos_token_ids);
    const at::Tensor targets = all_targets.index_select(1, columns);
    const at::Tensor anti =
        request.anti_targets.defined()
            ? request.anti_targets.to(device, at::kLong).index_select(1, columns)
            : at::Tensor();
    const int64_t rows = static_cast<int64_t>(layers.size()) + (request.include_output ? 1 : 0);
    Allocate(request, tokens.size(0), rows, columns.size(0), device, &out);
    RowWriter writer(request, &out, targets, anti);
    at::Tensor model_logits;
    if (need_model) {
      LENSD_ASSIGN_OR_RETURN(model_logits,
                             model.FinalNormAndUnembed(forward.residual.index_select(1, columns)));
      model_logits = model_logits.to(at::kFloat);
      if (request.statistics & kForwardKl) writer.SetModel(model_logits);
    }
    at::Tensor input_mask;  // [batch, 1, vocab]: ids present in each row's input
    if (request.mask_input) {
      input_mask = at::zeros({tokens.size(0), c.vocab_size}, tokens.options().dtype(at::kBool));
      input_mask.scatter_(1, at::where(valid, tokens, at::zeros_like(tokens)), true);
      input_mask = input_mask.unsqueeze(1);
    }
    const auto lens_logits = [&](const Lens& which, const at::Tensor& h,
                                 int64_t l) -> absl::StatusOr<at::Tensor> {
      LENSD_ASSIGN_OR_RETURN(at::Tensor logits, which.Logits(model, h, l));
      // The CPU's statistics read bfloat16 logits as they are (float32 arithmetic in registers);
      // elsewhere, and for masking with float32's lowest value, they become float32 first.
      if (!logits.device().is_cpu() || input_mask.defined() ||
          logits.scalar_type() != at::kBFloat16) {
        logits = logits.to(at::kFloat);
      }
      if (input_mask.defined())
        logits = logits.masked_fill(input_mask, std::numeric_limits<float>::lowest());
      return logits;
    };
    // Between the forward and the rows, and after each row: a caller may stop, or let other work
    // run, there.
    if (request.keep_going) LENSD_RETURN_IF_ERROR(request.keep_going());
    for (size_t r = 0; r < layers.size(); ++r) {
      const at::Tensor h = hooks.Captured({kind, layers[r]}).index_select(1, columns);
      LENSD_ASSIGN_OR_RETURN(const at::Tensor logits, lens_logits(lens, h, layers[r]));
      at::Tensor other;
      if (request.compare != nullptr) {
        LENSD_ASSIGN_OR_RETURN(other, lens_logits(*request.compare, h, layers[r]));
        other = at::log_softmax(other, -1, at::kFloat);
      }
      const at::Tensor logp =
          writer.Write(static_cast<int64_t>(r), logits, false, other, bool(sink));
      if (sink) LENSD_RETURN_IF_ERROR(sink(layers[r], logp));
      if (request.keep_going) LENSD_RETURN_IF_ERROR(request.keep_going());
    }
    if (request.include_output) {
      const at::Tensor other =
          request.compare != nullptr ? at::log_softmax(model_logits, -1) : at::Tensor();
      const at::Tensor logp = writer.Write(rows - 1, model_logits, true, other, bool(sink));
      if (sink) LENSD_RETURN_IF_ERROR(sink(c.num_layers, logp));
      out.rows.push_back(c.num_layers);
    }
    MoveToCpu(&out);
    return std::move(out);
  });
}

}  // namespace lensd::engine
