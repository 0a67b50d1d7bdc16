#include "server/testing/fake_decoding.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace lensd::server::testing {

DecodeOutput FakeDecoding::Expected(const DecodeSpec& spec, const ServedModelInfo& info) {
  DecodeOutput out;
  out.rows = spec.layers;
  if (out.rows.empty()) {
    for (int64_t l = 0; l < info.num_layers; ++l) out.rows.push_back(l);
  }
  if (spec.include_output) out.rows.push_back(info.num_layers);
  const auto length = static_cast<int64_t>(spec.tokens.size());
  out.positions = spec.positions;
  if (out.positions.empty()) {
    for (int64_t p = 0; p < length; ++p) out.positions.push_back(p);
  }
  out.top_k = spec.top_k;
  for (const int64_t p : out.positions) {
    out.targets.push_back(p + 1 < length ? spec.tokens[p + 1] : -1);
  }
  for (const int64_t r : out.rows) {
    for (const int64_t p : out.positions) {
      for (int64_t j = 0; j < spec.top_k; ++j) {
        out.top_ids.push_back((spec.tokens[p] + 3 * r + j) % info.vocab_size);
        out.top_probs.push_back(std::ldexp(1.0F, -static_cast<int>(j + 1)));
      }
      if ((spec.statistics & kEntropy) != 0) {
        out.entropy.push_back(static_cast<float>(r) + static_cast<float>(p) / 100.0F);
      }
      if ((spec.statistics & kMaxProbability) != 0) out.max_probability.push_back(0.5F);
    }
  }
  return out;
}

absl::StatusOr<std::vector<DecodeOutput>> FakeDecoding::Decode(
    absl::Span<const DecodeSpec* const> batch, const KeepGoing& keep_going,
    const HostLogProbSink& sink) const {
  WaitWhileHeld();
  batches_.fetch_add(1);
  requests_.fetch_add(static_cast<int64_t>(batch.size()));
  int largest = largest_batch_.load();
  while (static_cast<int>(batch.size()) > largest &&
         !largest_batch_.compare_exchange_weak(largest, static_cast<int>(batch.size()))) {
  }
  if (keep_going) {
    if (absl::Status s = keep_going(); !s.ok()) return s;
  }
  std::vector<DecodeOutput> outputs;
  for (size_t i = 0; i < batch.size(); ++i) {
    outputs.push_back(Expected(*batch[i], info_));
    outputs.back().batch_size = static_cast<int>(batch.size());
    if (!batch[i]->full_log_probs || !sink) continue;
    for (const int64_t row : outputs.back().rows) {
      // Row r's log-probabilities: log(1/vocab) + r everywhere (shape [positions, vocab]).
      HostTensor t;
      t.dtype = "float32";
      const auto positions = static_cast<int64_t>(outputs.back().positions.size());
      t.shape = {positions, info_.vocab_size};
      std::vector<float> values(static_cast<size_t>(positions * info_.vocab_size),
                                static_cast<float>(row) - std::log(info_.vocab_size));
      t.data.resize(values.size() * sizeof(float));
      std::memcpy(t.data.data(), values.data(), t.data.size());
      if (absl::Status s = sink(i, row, t); !s.ok()) return s;
    }
  }
  return outputs;
}

absl::Status FakeDecoding::ValidateDecode(const DecodeSpec& spec) const {
  if (spec.lens != "logit") {
    return absl::NotFoundError(absl::StrCat("lens: ", spec.lens, " is not loaded"));
  }
  for (const int64_t l : spec.layers) {
    if (l < 0 || l >= info_.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers: ", l, " out of range 0..", info_.num_layers - 1));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerateOutput> FakeDecoding::Generate(
    const GenerateSpec& spec, const std::function<absl::Status(int64_t, int64_t)>& on_token) const {
  WaitWhileHeld();
  GenerateOutput out;
  int64_t last = spec.tokens.empty() ? 0 : spec.tokens.back();
  for (int64_t step = 0; step < spec.max_new_tokens; ++step) {
    last = (last + 1) % info_.vocab_size;
    out.tokens.push_back(last);
    if (absl::Status s = on_token(step, last); !s.ok()) return s;
  }
  out.finish_reason = "length";
  return out;
}

void FakeDecoding::Hold() {
  absl::MutexLock lock(&mu_);
  held_ = true;
}

void FakeDecoding::Release() {
  absl::MutexLock lock(&mu_);
  held_ = false;
}

void FakeDecoding::WaitWhileHeld() const {
  absl::MutexLock lock(&mu_);
  if (!held_) return;
  waiting_.fetch_add(1);
  mu_.Await(absl::Condition(
      +[](const bool* held) { return !*held; }, &held_));
  waiting_.fetch_sub(1);
}

}  // namespace lensd::server::testing
