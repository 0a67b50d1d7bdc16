// The decode contract in one place, torch-free: what a decode may ask of a model (layers,
// positions, top-k, read-out, statistics, target ids) with one message per mistake naming its
// field, the default target rule, and the bits-per-byte conversion. The served path
// (ValidateDecodeSpec on a request's DecodeSpec) and the engine's batched Decode (its
// DecodeRequest tensors) both check through CheckDecodeFields, so they cannot drift apart.
#ifndef LENSD_CORE_ENGINE_LENS_DECODE_CONTRACT_H_
#define LENSD_CORE_ENGINE_LENS_DECODE_CONTRACT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/engine/model/model_config.h"
#include "core/lens_types.h"

namespace lensd::engine {

// A decode's fields as the contract sees them (empty layers and positions mean all).
struct DecodeFields {
  const std::vector<int64_t>& layers;
  const std::vector<int64_t>& positions;
  int64_t length = 0;  // tokens per row
  int64_t top_k = 0;
  Readout readout = Readout::kResidPre;
  uint32_t statistics = 0;
  bool include_output = true;
  bool has_anti_targets = false;
};

// INVALID_ARGUMENT "<field>: ..." saying what would fit.
absl::Status CheckDecodeFields(const ModelConfig& config, const DecodeFields& fields);

// Target or anti-target ids of one row (`field`): empty, or one per input token, each a token id
// or -1 for none.
absl::Status CheckTargetIds(const std::vector<int64_t>& ids, int64_t length, const char* field,
                            int64_t vocab);

// The default targets of a row of `tokens`: the next token, and after the last one the model's
// first EOS id (-1 when it has none).
std::vector<int64_t> DefaultTargets(const std::vector<int64_t>& tokens,
                                    const std::vector<int64_t>& eos_token_ids);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_DECODE_CONTRACT_H_
