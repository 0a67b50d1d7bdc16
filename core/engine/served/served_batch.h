// Runs several DecodeSpecs as one engine Decode: the specs' tokens right-padded into one
// [batch, max_length] tensor with an attention mask, their targets filled in on the host, and the
// result split back into one DecodeOutput per spec (cut to each spec's own positions).
// Not thread-safe; one per batch.
#ifndef LENSD_CORE_ENGINE_SERVED_SERVED_BATCH_H_
#define LENSD_CORE_ENGINE_SERVED_SERVED_BATCH_H_

#include <ATen/core/Tensor.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/engine/lens/decode.h"
#include "core/engine/model/causal_lm.h"
#include "core/lens_types.h"

namespace lensd::engine {

// Checks one spec's fields against the model; INVALID_ARGUMENT names the field.
absl::Status ValidateDecodeSpec(const ModelConfig& config, const DecodeSpec& spec);

class BatchedDecode {
 public:
  // Precondition: `batch` is non-empty, every spec valid and with the same BatchKey().
  BatchedDecode(const CausalLm& model, absl::Span<const DecodeSpec* const> batch);

  DecodeRequest& request() { return request_; }
  // Spec i's part of a row's [batch, positions, vocab] tensor: [positions_i, vocab].
  at::Tensor Slice(const at::Tensor& rows, size_t i) const;
  std::vector<DecodeOutput> Split(const DecodeResult& result) const;

 private:
  int64_t Columns(size_t i) const;

  absl::Span<const DecodeSpec* const> batch_;
  DecodeRequest request_;
  bool all_positions_;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_SERVED_SERVED_BATCH_H_
