#include "core/patching_types.h"

namespace lensd {
namespace {

bool PerHead(PatchingSite site) {
  return site == PatchingSite::kHeadZ || site == PatchingSite::kHeadQ ||
         site == PatchingSite::kHeadK || site == PatchingSite::kHeadV ||
         site == PatchingSite::kHeadPattern;
}

}  // namespace

int64_t PatchingCells(const ActivationPatchingSpec& spec, int64_t layers, int64_t heads,
                      int64_t kv_heads) {
  const auto rows = static_cast<int64_t>(spec.layers.empty() ? layers : spec.layers.size());
  const auto positions =
      static_cast<int64_t>(spec.positions.empty() ? spec.corrupted.size() : spec.positions.size());
  int64_t cells = 0;
  for (const PatchingSweep& sweep : spec.sweeps) {
    const bool kv = sweep.site == PatchingSite::kHeadK || sweep.site == PatchingSite::kHeadV;
    const int64_t per_layer =
        (sweep.all_positions ? 1 : positions) * (PerHead(sweep.site) ? (kv ? kv_heads : heads) : 1);
    cells += rows * per_layer;
  }
  return cells;
}

const char* PatchingSiteName(PatchingSite site) {
  switch (site) {
    case PatchingSite::kResidPre:
      return "resid_pre";
    case PatchingSite::kResidMid:
      return "resid_mid";
    case PatchingSite::kResidPost:
      return "resid_post";
    case PatchingSite::kAttnOut:
      return "attn_out";
    case PatchingSite::kMlpOut:
      return "mlp_out";
    case PatchingSite::kHeadZ:
      return "z";
    case PatchingSite::kHeadQ:
      return "q";
    case PatchingSite::kHeadK:
      return "k";
    case PatchingSite::kHeadV:
      return "v";
    case PatchingSite::kHeadPattern:
      return "pattern";
  }
  return "unknown";
}

}  // namespace lensd
