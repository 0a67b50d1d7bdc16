// Devices and dtypes by name, and what this libtorch build can run. The single place that knows
// about CUDA.
#ifndef LENSD_CORE_ENGINE_MODEL_DEVICE_H_
#define LENSD_CORE_ENGINE_MODEL_DEVICE_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd::engine {

// "cpu", "cuda", "cuda:1". INVALID_ARGUMENT for a malformed name or a CUDA device this process
// cannot use (no GPU, or index out of range), naming the devices it has.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view name);

// "float32", "bfloat16", "float16" (and "fp32", "bf16", "fp16"). INVALID_ARGUMENT otherwise.
absl::StatusOr<c10::ScalarType> ParseDtype(absl::string_view name);
std::string DtypeName(c10::ScalarType dtype);

// INVALID_ARGUMENT, saying which dtypes the device can run, when `dtype` cannot run on `device`
// (bfloat16 on a GPU older than compute capability 8.0).
absl::Status CheckComputeSupport(c10::ScalarType dtype, c10::Device device);

// Whether this CPU has bfloat16 arithmetic (AVX512_BF16; AMX CPUs have it too).
bool CpuHasBf16Arithmetic();

// Whether precision "auto" runs lens training under bfloat16 autocast on the CPU: the
// --cpu_precision setting (SetCpuPrecision), "auto" meaning when the CPU has bfloat16 arithmetic.
bool CpuAutoUsesBf16();

// The process's exit status after a device error that poisons the CUDA context (EX_SOFTWARE).
inline constexpr int kExitPoisonedDevice = 70;

// Whether a CUDA error (cudaError_t) leaves the context unusable: every later call on it fails.
bool PoisonsDevice(int32_t cuda_error);

// Logs the error to stderr and ends the process with kExitPoisonedDevice, without running
// destructors (they would call into the broken context). Thread-safe; never returns.
[[noreturn]] void ExitOnPoisonedDevice(absl::string_view context, absl::string_view message);

// Number of usable CUDA devices (0 without CUDA).
int CudaDeviceCount();

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_DEVICE_H_
