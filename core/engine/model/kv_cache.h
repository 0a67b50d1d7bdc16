// Keys and values of past tokens for incremental decoding, one request's worth.
//
// Columns are appended per forward call (the same columns for every row); each column records per
// row whether it holds a real token and that token's position, so a right-padded batch of prompts
// can keep decoding with per-row positions. Buffers grow by doubling.
// Not thread-safe: owned by one request.
#ifndef LENSD_CORE_ENGINE_MODEL_KV_CACHE_H_
#define LENSD_CORE_ENGINE_MODEL_KV_CACHE_H_

#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

namespace lensd::engine {

class KvCache {
 public:
  explicit KvCache(int64_t num_layers);

  // Columns held so far (including padding columns).
  int64_t length() const { return length_; }
  bool empty() const { return length_ == 0; }
  // Number of real tokens of each row so far, [batch] int64; undefined before the first step.
  const at::Tensor& row_lengths() const { return row_lengths_; }

  // Starts a step of `valid.size(1)` new columns: valid [batch, t] bool, positions [batch, t].
  void BeginStep(const at::Tensor& valid, const at::Tensor& positions);
  // Stores this step's keys and values of `layer` ([batch, kv_heads, t, head_dim]) and returns
  // all of them so far.
  std::pair<at::Tensor, at::Tensor> Append(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // Validity and positions of every column including this step's, [batch, length + t].
  at::Tensor key_valid() const;
  at::Tensor key_positions() const;
  // Ends the step; layers not reached (an early exit) keep their old length and must not be used
  // by a later full pass.
  void EndStep();
  // Layers whose keys cover every column (all layers unless steps exited early).
  int64_t complete_layers() const;

 private:
  static at::Tensor Grow(const at::Tensor& buffer, int64_t dim, int64_t needed);

  std::vector<at::Tensor> keys_;  // [batch, kv_heads, capacity, head_dim]
  std::vector<at::Tensor> values_;
  std::vector<int64_t> layer_length_;
  at::Tensor valid_;      // [batch, capacity] bool
  at::Tensor positions_;  // [batch, capacity] int64
  at::Tensor row_lengths_;
  int64_t length_ = 0;
  int64_t step_ = 0;  // columns of the step in progress
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_KV_CACHE_H_
