#include "core/engine/model/kv_cache.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace lensd::engine {

KvCache::KvCache(int64_t num_layers)
    : keys_(static_cast<size_t>(num_layers)),
      values_(static_cast<size_t>(num_layers)),
      layer_length_(static_cast<size_t>(num_layers), 0) {}

at::Tensor KvCache::Grow(const at::Tensor& buffer, int64_t dim, int64_t needed) {
  if (buffer.defined() && buffer.size(dim) >= needed) return buffer;
  std::vector<int64_t> shape = buffer.sizes().vec();
  const int64_t old = buffer.size(dim);
  shape[static_cast<size_t>(dim)] = std::max<int64_t>(needed, std::max<int64_t>(16, 2 * old));
  at::Tensor grown = at::zeros(shape, buffer.options());
  if (old > 0) grown.narrow(dim, 0, old).copy_(buffer);
  return grown;
}

void KvCache::BeginStep(const at::Tensor& valid, const at::Tensor& positions) {
  step_ = valid.size(1);
  if (!valid_.defined()) {
    valid_ = at::zeros({valid.size(0), 0}, valid.options().dtype(at::kBool));
    positions_ = at::zeros({valid.size(0), 0}, positions.options());
    row_lengths_ = at::zeros({valid.size(0)}, positions.options());
  }
  valid_ = Grow(valid_, 1, length_ + step_);
  positions_ = Grow(positions_, 1, length_ + step_);
  valid_.narrow(1, length_, step_).copy_(valid);
  positions_.narrow(1, length_, step_).copy_(positions);
}

std::pair<at::Tensor, at::Tensor> KvCache::Append(int64_t layer, const at::Tensor& k,
                                                  const at::Tensor& v) {
  const auto i = static_cast<size_t>(layer);
  if (!keys_[i].defined()) {
    keys_[i] = at::zeros({k.size(0), k.size(1), 0, k.size(3)}, k.options());
    values_[i] = at::zeros({v.size(0), v.size(1), 0, v.size(3)}, v.options());
  }
  keys_[i] = Grow(keys_[i], 2, length_ + step_);
  values_[i] = Grow(values_[i], 2, length_ + step_);
  keys_[i].narrow(2, length_, step_).copy_(k);
  values_[i].narrow(2, length_, step_).copy_(v);
  layer_length_[i] = length_ + step_;
  return {keys_[i].narrow(2, 0, length_ + step_), values_[i].narrow(2, 0, length_ + step_)};
}

at::Tensor KvCache::key_valid() const { return valid_.narrow(1, 0, length_ + step_); }

at::Tensor KvCache::key_positions() const { return positions_.narrow(1, 0, length_ + step_); }

void KvCache::EndStep() {
  row_lengths_ = row_lengths_ + valid_.narrow(1, length_, step_).sum(1);
  length_ += step_;
  step_ = 0;
}

int64_t KvCache::complete_layers() const {
  int64_t n = 0;
  while (n < static_cast<int64_t>(layer_length_.size()) &&
         layer_length_[static_cast<size_t>(n)] == length_) {
    ++n;
  }
  return n;
}

}  // namespace lensd::engine
