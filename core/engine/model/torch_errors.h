// The exception firewall: every engine entry point runs its libtorch code through CatchTorch,
// so that no exception leaves core/engine. Out-of-memory becomes RESOURCE_EXHAUSTED (retryable;
// the allocator's cache is emptied so that the failed request holds nothing); a CUDA error that
// poisons the context ends the process (ExitOnPoisonedDevice: a supervisor restarts it, rather
// than every later call failing); any other libtorch error is INTERNAL (a shape or dtype problem
// the engine should have caught first).
// Include only from core/engine .cc files.
#ifndef LENSD_CORE_ENGINE_MODEL_TORCH_ERRORS_H_
#define LENSD_CORE_ENGINE_MODEL_TORCH_ERRORS_H_

#include <c10/util/Exception.h>

#include <exception>
#include <new>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/engine/model/device.h"
#include "core/engine/served/engine_factory.h"

namespace lensd::engine {

inline std::string FirstLine(absl::string_view message) {
  return std::string(message.substr(0, message.find('\n')));
}

// Runs fn (returning absl::Status or absl::StatusOr<T>); exceptions become a Status whose message
// starts with `context` (the model, layer or file concerned).
template <typename Fn>
auto CatchTorch(absl::string_view context, Fn&& fn) -> decltype(fn()) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const c10::OutOfMemoryError& e) {
    ReleaseFreedMemory();
    return absl::ResourceExhaustedError(
        absl::StrCat(context, ": out of device memory: ", FirstLine(e.what_without_backtrace())));
  } catch (const c10::AcceleratorError& e) {
    if (PoisonsDevice(e.get_error_code())) {
      ExitOnPoisonedDevice(context, FirstLine(e.what_without_backtrace()));
    }
    return absl::InternalError(absl::StrCat(context, ": ", FirstLine(e.what_without_backtrace())));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(context, ": ", FirstLine(e.what_without_backtrace())));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(context, ": ", FirstLine(e.what())));
  }
}

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_TORCH_ERRORS_H_
