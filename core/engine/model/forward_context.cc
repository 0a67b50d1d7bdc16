#include "core/engine/model/forward_context.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lensd::engine {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Inverse frequencies [rows, rotary_dim / 2] in float32, built the way transformers builds them
// (float32 pow of the base), with the configured scaling. `seq_lens` [rows] is each sequence's
// max position + 1: dynamic scaling and longrope depend on it, so each request of a batch gets the
// frequencies it would get alone (transformers takes the padded batch's length for every row).
at::Tensor InverseFrequencies(const RopeConfig& rope, int64_t max_positions,
                              const at::Tensor& seq_lens) {
  const int64_t dim = rope.rotary_dim;
  const at::Tensor exponents =
      at::arange(0, dim, 2, seq_lens.options().dtype(at::kLong)).to(at::kFloat) /
      static_cast<double>(dim);
  at::Tensor inv_freq;
  if (rope.type == "dynamic") {
    // base * (factor * seq_len / max - (factor - 1)) ^ (dim / (dim - 2)) past max_positions; in
    // double, then the float32 pow of the base as transformers does.
    const at::Tensor len = seq_lens.to(at::kDouble).clamp_min(max_positions);
    const at::Tensor base =
        rope.theta * at::pow(rope.factor * len / max_positions - (rope.factor - 1.0),
                             static_cast<double>(dim) / static_cast<double>(dim - 2));
    const at::Tensor base_f =
        at::where(seq_lens > max_positions, base, at::full_like(base, rope.theta))
            .to(at::kFloat)
            .unsqueeze(1);
    inv_freq = 1.0 / at::pow(base_f, exponents.unsqueeze(0));
    return inv_freq;
  }
  if (rope.type == "longrope") {
    const auto factors = [&](const std::vector<double>& f) {
      return at::tensor(f, exponents.options().dtype(at::kDouble)).to(at::kFloat).unsqueeze(0);
    };
    const at::Tensor longer = (seq_lens > rope.original_max_positions).unsqueeze(1);
    const at::Tensor ext = at::where(longer, factors(rope.long_factor), factors(rope.short_factor));
    return 1.0 / (ext * at::pow(rope.theta, exponents).unsqueeze(0));
  }
  inv_freq = (1.0 / at::pow(rope.theta, exponents)).unsqueeze(0);
  if (rope.type == "linear") inv_freq = inv_freq / rope.factor;
  if (rope.type == "llama3") {
    const double old_context = static_cast<double>(rope.original_max_positions);
    const double low_freq_wavelen = old_context / rope.low_freq_factor;
    const double high_freq_wavelen = old_context / rope.high_freq_factor;
    const at::Tensor wavelen = 2 * kPi / inv_freq;
    at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq);
    const at::Tensor smooth = (old_context / wavelen - rope.low_freq_factor) /
                              (rope.high_freq_factor - rope.low_freq_factor);
    const at::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
    const at::Tensor medium =
        (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
    inv_freq = at::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

// ALiBi's slope per head [heads] in float32: powers of 2^(-8 / n) for the largest power of two
// n <= heads, then odd powers of 2^(-4 / n) for the rest.
at::Tensor AlibiSlopes(int64_t heads, at::Device device) {
  const auto options = at::TensorOptions().device(device);
  const auto closest = static_cast<int64_t>(1) << static_cast<int>(std::floor(std::log2(heads)));
  const auto base_of = [&](int64_t n) {
    return at::full({}, std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(n)) - 3))),
                    options.dtype(at::kFloat));
  };
  at::Tensor slopes =
      at::pow(base_of(closest), at::arange(1, 1 + closest, options.dtype(at::kInt)));
  if (closest != heads) {
    const int64_t remaining = std::min(closest, heads - closest);
    slopes = at::cat({slopes, at::pow(base_of(2 * closest), at::arange(1, 1 + 2 * remaining, 2,
                                                                       options.dtype(at::kInt)))});
  }
  return slopes;
}

}  // namespace

ForwardContext::ForwardContext(const ModelConfig& config, Hooks* hooks, KvCache* cache,
                               at::Tensor valid, at::Tensor positions, at::ScalarType compute_dtype)
    : config_(config),
      hooks_(hooks),
      cache_(cache),
      valid_(std::move(valid)),
      positions_(std::move(positions)),
      dtype_(compute_dtype) {}

const at::Tensor& ForwardContext::Mask(int64_t window) {
  auto it = masks_.find(window);
  if (it != masks_.end()) return it->second;
  const int64_t t = valid_.size(1);
  const at::Tensor key_valid = cache_ != nullptr ? cache_->key_valid() : valid_;
  const at::Tensor key_positions = cache_ != nullptr ? cache_->key_positions() : positions_;
  const int64_t keys = key_valid.size(1);
  const int64_t past = keys - t;
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(valid_.device());
  const at::Tensor query_column = at::arange(past, keys, long_options).view({t, 1});
  const at::Tensor key_column = at::arange(0, keys, long_options).view({1, keys});
  at::Tensor allowed = (key_column <= query_column).unsqueeze(0) & key_valid.unsqueeze(1);
  if (window > 0) {
    const at::Tensor distance = positions_.unsqueeze(2) - key_positions.unsqueeze(1);
    allowed = allowed & (distance < window);
  }
  const double lowest = dtype_ == at::kBFloat16 ? -3.3895313892515355e38
                        : dtype_ == at::kHalf   ? -65504.0
                                                : std::numeric_limits<float>::lowest();
  at::Tensor mask = at::zeros(allowed.sizes(), valid_.options().dtype(dtype_));
  mask.masked_fill_(allowed.logical_not(), lowest);
  return masks_.emplace(window, mask.unsqueeze(1)).first->second;
}

const at::Tensor& ForwardContext::AlibiMask(int64_t window) {
  auto it = alibi_masks_.find(window);
  if (it != alibi_masks_.end()) return it->second;
  const at::Tensor key_positions = cache_ != nullptr ? cache_->key_positions() : positions_;
  const at::Tensor biases =
      AlibiSlopes(config_.num_heads, key_positions.device()).view({1, -1, 1, 1}) *
      key_positions.to(at::kFloat).unsqueeze(1).unsqueeze(1);  // [b, heads, 1, keys]
  return alibi_masks_.emplace(window, Mask(window) + biases.to(dtype_)).first->second;
}

const std::pair<at::Tensor, at::Tensor>& ForwardContext::Rotary(bool local) {
  local = local && config_.local_rope.has_value();
  std::pair<at::Tensor, at::Tensor>& cached = local ? local_rotary_ : rotary_;
  if (cached.first.defined()) return cached;
  const RopeConfig& rope = local ? *config_.local_rope : config_.rope;
  // Each row's own length: its largest real position + 1 (padding does not count).
  const at::Tensor seq_lens =
      positions_.size(1) > 0 ? at::where(valid_, positions_, at::zeros_like(positions_)).amax(1) + 1
                             : at::ones({positions_.size(0)}, positions_.options());
  const at::Tensor inv_freq =
      InverseFrequencies(rope, config_.max_positions, seq_lens);  // [b, dim/2]
  const at::Tensor freqs =
      positions_.to(at::kFloat).unsqueeze(-1) * inv_freq.unsqueeze(1);  // [b, t, dim/2]
  const at::Tensor angles =                                             // [b, t, 1, dim]
      (rope.interleaved ? freqs.repeat_interleave(2, -1) : at::cat({freqs, freqs}, -1))
          .unsqueeze(2);
  if (rope.attention_factor != 1.0) {  // longrope: cos and sin scaled in float32, then cast
    cached = {(angles.cos() * rope.attention_factor).to(dtype_),
              (angles.sin() * rope.attention_factor).to(dtype_)};
  } else {
    cached = {angles.cos().to(dtype_), angles.sin().to(dtype_)};
  }
  return cached;
}

}  // namespace lensd::engine
