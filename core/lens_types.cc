#include "core/lens_types.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lensd {

std::string DecodeSpec::BatchKey() const {
  return absl::StrCat("decode|", lens, "|", absl::StrJoin(layers, ","), "|", include_output, "|",
                      absl::StrJoin(positions, ","), "|", static_cast<int>(readout), "|", top_k,
                      "|", statistics, "|", mask_input, "|", compare_lens, "|", full_log_probs);
}

}  // namespace lensd
