// Torch-free interventions: edits of the activations at TransformerLens hook points while a
// request's forward pass runs (proto/lensd/v1/interventions.proto describes each operation and
// the shapes its tensors broadcast to). The server converts the wire message to these; the engine
// (core/engine/interventions/interventions.h) validates and applies them.
#ifndef LENSD_CORE_INTERVENTION_TYPES_H_
#define LENSD_CORE_INTERVENTION_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/host_tensor.h"

namespace lensd {

enum class InterventionOp : uint8_t {
  kSet,         // selection <- tensor
  kAdd,         // selection + number x tensor (steering)
  kScale,       // selection x number
  kZero,        // 0
  kMean,        // tensor, or the mean over `inputs`
  kPatch,       // the value the hook point takes on inputs[0]
  kProjectOut,  // minus the component in span(tensor rows)
  kKeepOnly,    // only the component in span(tensor rows)
  kSaeClamp,    // feature `feature` of SAE `sae` clamped to `number`, error term kept
};

// Where an edit without explicit positions applies in Generate.
enum class InterventionSpan : uint8_t { kAll, kPrompt, kGenerated };

struct InterventionSpec {
  std::string hook_point;          // TransformerLens name ("" for an SAE clamp: the SAE's)
  std::vector<int64_t> positions;  // sequence positions; empty: every position of `span`
  std::vector<int64_t> heads;      // per-head points; empty: every head
  InterventionSpan span = InterventionSpan::kAll;
  InterventionOp op = InterventionOp::kZero;
  HostTensor tensor;    // kSet value, kAdd vector, kMean given mean, kProjectOut/kKeepOnly rows
  double number = 1.0;  // kAdd coefficient, kScale factor, kSaeClamp value
  // kPatch: the source sequence (one); kMean without a tensor: the reference sequences.
  std::vector<std::vector<int64_t>> inputs;
  bool per_position = false;  // kMean over inputs: a mean per position
  std::string sae;            // kSaeClamp
  int64_t feature = 0;        // kSaeClamp
};

}  // namespace lensd

#endif  // LENSD_CORE_INTERVENTION_TYPES_H_
