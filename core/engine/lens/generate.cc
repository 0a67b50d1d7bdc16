#include "core/engine/lens/generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/interventions/interventions.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

constexpr int64_t kMaxNewTokens = 1 << 16;

absl::Status Validate(const CausalLm& model, const GenerateRequest& r) {
  const ModelConfig& c = model.config();
  if (!r.tokens.defined() || r.tokens.dim() != 2 || r.tokens.size(1) < 1) {
    return absl::InvalidArgumentError("tokens must be a non-empty [batch, length] tensor");
  }
  if (r.layer < 0 || r.layer > c.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", r.layer, " out of range: model ", c.model_type, " has layers 0..",
                     c.num_layers - 1, " (", c.num_layers, " for its own output)"));
  }
  if (r.max_new_tokens < 0 || r.max_new_tokens > kMaxNewTokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be in 0..", kMaxNewTokens));
  }
  if (c.absolute_positions && r.tokens.size(1) + r.max_new_tokens > c.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a prompt of ", r.tokens.size(1), " tokens plus max_new_tokens ", r.max_new_tokens,
        " exceeds the model's context of ", c.max_positions, " positions"));
  }
  if (!r.greedy && !(r.temperature > 0)) {
    return absl::InvalidArgumentError("temperature must be > 0 (or ask for greedy decoding)");
  }
  if (r.top_k < 0 || r.top_k > c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be in 0..", c.vocab_size));
  }
  if (!(r.top_p > 0 && r.top_p <= 1)) return absl::InvalidArgumentError("top_p must be in (0, 1]");
  for (const int64_t id : r.stop_tokens) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop token ", id, " out of range 0..", c.vocab_size - 1));
    }
  }
  return absl::OkStatus();
}

// Next tokens [batch] from logits [batch, vocab]: greedy, or temperature, top-k, top-p (in that
// order, as transformers applies them) and a draw on the CPU from a seeded generator.
at::Tensor Choose(const at::Tensor& logits_in, const GenerateRequest& r, at::Generator& generator) {
  at::Tensor logits = logits_in.to(at::kFloat);
  if (r.greedy) return logits.argmax(-1);
  logits = logits / r.temperature;
  const float lowest = -std::numeric_limits<float>::infinity();
  if (r.top_k > 0 && r.top_k < logits.size(-1)) {
    const at::Tensor kth = std::get<0>(logits.topk(r.top_k, -1)).narrow(-1, r.top_k - 1, 1);
    logits = logits.masked_fill(logits < kth, lowest);
  }
  if (r.top_p < 1.0) {
    const auto [sorted, order] = logits.sort(-1, /*descending=*/true);
    const at::Tensor cumulative = sorted.softmax(-1).cumsum(-1);
    // Drop a token once the tokens before it already hold top_p; the first always stays.
    at::Tensor drop = (cumulative - sorted.softmax(-1)) >= r.top_p;
    logits = logits.scatter(-1, order, sorted.masked_fill(drop, lowest));
  }
  const at::Tensor probs = logits.softmax(-1).cpu();
  return at::multinomial(probs, 1, false, generator).squeeze(-1).to(logits_in.device());
}

// Phi-3's longrope turns q and k with its long factors once a sequence passes the pretraining
// context; keys cached before that were turned with the short ones. As transformers' Phi-3 does
// in generation, the cache is dropped and every row run again in full when a row crosses: whether
// some row not done goes from at most original_max_positions tokens to more with this step.
bool CrossesLongRope(const ModelConfig& c, const std::vector<std::vector<int64_t>>& prompts,
                     const GenerateResult& result, const at::Tensor& done) {
  if (c.rope.type != "longrope") return false;
  const at::Tensor done_cpu = done.cpu();
  for (size_t row = 0; row < prompts.size(); ++row) {
    const auto after = static_cast<int64_t>(prompts[row].size() + result.tokens[row].size());
    if (!done_cpu[static_cast<int64_t>(row)].item<bool>() &&
        after - 1 <= c.rope.original_max_positions && after > c.rope.original_max_positions) {
      return true;
    }
  }
  return false;
}

// Each row's real prompt tokens (where the mask, if any, is set).
std::vector<std::vector<int64_t>> PromptRows(const at::Tensor& tokens, const at::Tensor& mask) {
  const at::Tensor ids = tokens.cpu().to(at::kLong).contiguous();
  const at::Tensor real = mask.defined() ? mask.cpu().ne(0) : at::ones_like(ids, at::kBool);
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(ids.size(0)));
  for (int64_t row = 0; row < ids.size(0); ++row) {
    const at::Tensor kept = ids[row].masked_select(real[row]).contiguous();
    rows[static_cast<size_t>(row)].assign(kept.data_ptr<int64_t>(),
                                          kept.data_ptr<int64_t>() + kept.numel());
  }
  return rows;
}

// Every row's prompt and what it generated so far, right-padded, with its attention mask.
std::pair<at::Tensor, at::Tensor> WholeSequences(const std::vector<std::vector<int64_t>>& prompts,
                                                 const GenerateResult& result) {
  const int64_t batch = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int64_t>> rows = prompts;
  size_t width = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    rows[r].insert(rows[r].end(), result.tokens[r].begin(), result.tokens[r].end());
    width = std::max(width, rows[r].size());
  }
  at::Tensor ids = at::zeros({batch, static_cast<int64_t>(width)}, at::kLong);
  at::Tensor mask = at::zeros_like(ids);
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t n = static_cast<int64_t>(rows[r].size());
    ids[static_cast<int64_t>(r)].narrow(0, 0, n).copy_(at::tensor(rows[r], at::kLong));
    mask[static_cast<int64_t>(r)].narrow(0, 0, n).fill_(1);
  }
  return {ids, mask};
}

}  // namespace

absl::StatusOr<GenerateResult> Generate(const CausalLm& model, const Lens& lens,
                                        const GenerateRequest& request, const StepSink& on_step) {
  LENSD_RETURN_IF_ERROR(Validate(model, request));
  const ModelConfig& c = model.config();
  return CatchTorch("generate", [&]() -> absl::StatusOr<GenerateResult> {
    c10::InferenceMode inference;
    const at::Device device = model.device();
    const int64_t batch = request.tokens.size(0);
    const bool own_output = request.layer == c.num_layers;
    // Blocks from `layer` on cannot change the stream entering `layer`: stopping there is exact.
    const int64_t stop = own_output || !request.early_exit ? -1 : request.layer;
    Hooks hooks(c.num_layers);
    if (request.interventions != nullptr) request.interventions->Install(hooks);
    if (!own_output && stop < 0) hooks.Capture({HookKind::kResidPre, request.layer});
    KvCache cache(c.num_layers);
    std::vector<int64_t> stops = request.stop_tokens;
    if (request.stop_at_eos)
      stops.insert(stops.end(), c.eos_token_ids.begin(), c.eos_token_ids.end());
    const at::Tensor stop_ids =
        at::tensor(stops.empty() ? std::vector<int64_t>{-1} : stops, at::kLong).to(device);
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(request.seed);

    GenerateResult result;
    result.tokens.resize(static_cast<size_t>(batch));
    result.finish_reasons.assign(static_cast<size_t>(batch), "length");
    at::Tensor done = at::zeros({batch}, at::TensorOptions().dtype(at::kBool).device(device));
    at::Tensor input = request.tokens;
    at::Tensor mask = request.attention_mask;
    // Each row's prompt, for a run in full (CrossesLongRope).
    const std::vector<std::vector<int64_t>> prompts = PromptRows(request.tokens, mask);
    for (int64_t step = 0; step < request.max_new_tokens; ++step) {
      if (step > 0 && CrossesLongRope(c, prompts, result, done)) {
        cache = KvCache(c.num_layers);
        auto [ids, whole_mask] = WholeSequences(prompts, result);
        input = ids.to(device);
        mask = whole_mask.to(device);
      }
      LENSD_ASSIGN_OR_RETURN(
          const ForwardResult forward,
          model.Forward({input, mask, {}, stop, own_output ? LogitsMode::kLast : LogitsMode::kNone},
                        &hooks, &cache));
      at::Tensor logits = forward.logits;
      if (!own_output) {
        const at::Tensor stream =
            stop >= 0 ? forward.residual : hooks.Captured({HookKind::kResidPre, request.layer});
        // The read-out position: each row's last real token of this call.
        const at::Tensor valid =
            mask.defined()
                ? mask.to(device).ne(0)
                : at::ones(input.sizes(), at::TensorOptions().dtype(at::kBool).device(device));
        const at::Tensor columns =
            at::arange(input.size(1), at::TensorOptions().dtype(at::kLong).device(device));
        const at::Tensor last = at::where(valid, columns, at::zeros_like(columns)).amax(1);
        const at::Tensor h = stream.index({at::arange(batch, last.options()), last});
        LENSD_ASSIGN_OR_RETURN(logits, lens.Logits(model, h, request.layer));
      }
      at::Tensor next = Choose(logits, request, generator);
      next = at::where(done, at::full_like(next, -1), next);
      const at::Tensor cpu = next.cpu();
      std::vector<int64_t> emitted(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + batch);
      for (int64_t row = 0; row < batch; ++row) {
        if (emitted[static_cast<size_t>(row)] >= 0)
          result.tokens[static_cast<size_t>(row)].push_back(emitted[static_cast<size_t>(row)]);
      }
      const at::Tensor stopped = at::isin(next, stop_ids) & done.logical_not();
      for (int64_t row = 0; row < batch; ++row) {
        if (stopped[row].item<bool>()) result.finish_reasons[static_cast<size_t>(row)] = "stop";
      }
      done = done | stopped;
      if (on_step) LENSD_RETURN_IF_ERROR(on_step(step, emitted));
      if (done.all().item<bool>()) break;
      // Finished rows feed a placeholder the others never attend to.
      input = next.clamp_min(0).unsqueeze(1);
      mask = done.logical_not().unsqueeze(1).to(at::kLong);
    }
    return result;
  });
}

}  // namespace lensd::engine
