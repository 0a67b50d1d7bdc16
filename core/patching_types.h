// Torch-free activation patching (TransformerLens's patching module, run as a server should):
// a clean and a corrupted input of one length, a metric on the output logits, and sweeps of
// patches, each cell one patched run: denoising runs the corrupted input with the clean value
// patched in at the cell; noising runs the clean input with the corrupted value.
#ifndef LENSD_CORE_PATCHING_TYPES_H_
#define LENSD_CORE_PATCHING_TYPES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/attribution_types.h"

namespace lensd {

// What a sweep patches: a residual point or block output (cells by layer and position), or one
// head's query, key, value, z or attention pattern (cells by layer, position and head; key and
// value heads for grouped-query models). With all_positions, every position at once.
enum class PatchingSite : uint8_t {
  kResidPre,
  kResidMid,
  kResidPost,
  kAttnOut,
  kMlpOut,
  kHeadZ,
  kHeadQ,
  kHeadK,
  kHeadV,
  kHeadPattern,  // positions are query (destination) positions
};

enum class PatchingDirection : uint8_t { kDenoising, kNoising };

struct PatchingSweep {
  PatchingSite site = PatchingSite::kResidPre;
  bool all_positions = false;
};

struct ActivationPatchingSpec {
  std::vector<int64_t> clean;
  std::vector<int64_t> corrupted;  // the clean input's length
  MetricSpec metric;               // on the patched run's logits (target default: clean's top-1)
  PatchingDirection direction = PatchingDirection::kDenoising;
  std::vector<PatchingSweep> sweeps;
  std::vector<int64_t> layers;     // empty: every layer
  std::vector<int64_t> positions;  // by-position sweeps; empty: every position
};

// One sweep's grid: [layers, positions] for residual points and block outputs, [layers,
// positions, heads] for heads, [layers, heads] (heads, all positions) or [layers] (all positions).
struct PatchingGrid {
  PatchingSweep sweep;
  std::vector<std::string> dims;  // "layer", "position", "head"
  std::vector<int64_t> shape;
  std::vector<float> metric;      // the patched run's metric, row-major
  std::vector<float> normalized;  // (patched - corrupted) / (clean - corrupted)
};

struct ActivationPatchingOutput {
  double clean_metric = 0;
  double corrupted_metric = 0;
  int64_t target = -1;  // the metric's target (resolved)
  std::vector<int64_t> layers;
  std::vector<int64_t> positions;
  std::vector<PatchingGrid> grids;
  int64_t patched_runs = 0;    // cells
  int64_t forward_passes = 0;  // batched passes that ran them (plus the clean and corrupted ones)
};

// Called after each batch of patched runs with the cells done and in all; a non-OK status
// (cancelled, past the deadline) stops the sweep and is returned.
using PatchingProgress = std::function<absl::Status(int64_t done, int64_t total)>;

// Cells of a spec on a model of `layers` layers, `heads` heads and `kv_heads` key/value heads,
// for admission before any work.
int64_t PatchingCells(const ActivationPatchingSpec& spec, int64_t layers, int64_t heads,
                      int64_t kv_heads);

const char* PatchingSiteName(PatchingSite site);  // "resid_pre", ..., "z", "q", "k", "v", "pattern"

}  // namespace lensd

#endif  // LENSD_CORE_PATCHING_TYPES_H_
