// Writes a tuned lens as tuned-lens's TunedLens.save() does, so that the Python library
// (TunedLens.from_model_and_pretrained) and lensd both read it: a folder with config.json (one
// line, the fields in tuned-lens's dataclass order) and params.pt (torch.save of the translators'
// state dict: "{i}.weight" [d, d], "{i}.bias" [d], float32).
// The folder appears whole or not at all: it is assembled under a temporary name beside `dir`
// and renamed into place.
#ifndef LENSD_CORE_ENGINE_LENS_LENS_WRITER_H_
#define LENSD_CORE_ENGINE_LENS_LENS_WRITER_H_

#include <string>

#include "absl/status/status.h"
#include "core/engine/lens/lens.h"

namespace lensd::engine {

// ALREADY_EXISTS when `dir` exists; the errors of core/durable_file.h (RESOURCE_EXHAUSTED for a
// full disk, PERMISSION_DENIED for an unwritable folder) naming the path; nothing is left behind
// on failure.
absl::Status SaveTunedLens(const TunedLens& lens, const std::string& dir);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_LENS_WRITER_H_
