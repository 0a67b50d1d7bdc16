#include "core/lens_types.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lensd {

std::string DecodeSpec::BatchKey() const {
  // An edited forward pass is the request's own: its address keeps the key unique while it waits.
  const std::string own =
      interventions.empty() ? "" : absl::StrCat("|edited@", reinterpret_cast<uintptr_t>(this));
  return absl::StrCat("decode|", lens, "|", absl::StrJoin(layers, ","), "|", include_output, "|",
                      absl::StrJoin(positions, ","), "|", static_cast<int>(readout), "|", top_k,
                      "|", statistics, "|", mask_input, "|", compare_lens, "|", full_log_probs,
                      own);
}

}  // namespace lensd
