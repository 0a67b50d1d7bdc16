// Devices and dtypes by name, and what this libtorch build can run. The single place that knows
// about CUDA.
#ifndef LENSD_CORE_ENGINE_DEVICE_H_
#define LENSD_CORE_ENGINE_DEVICE_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd::engine {

// "cpu", "cuda", "cuda:1". INVALID_ARGUMENT for a malformed name; FAILED_PRECONDITION for a CUDA
// device this process cannot use (no CUDA build, no GPU, or index out of range).
absl::StatusOr<c10::Device> ParseDevice(absl::string_view name);

// "float32", "bfloat16", "float16" (and "fp32", "bf16", "fp16"). INVALID_ARGUMENT otherwise.
absl::StatusOr<c10::ScalarType> ParseDtype(absl::string_view name);
std::string DtypeName(c10::ScalarType dtype);

// FAILED_PRECONDITION when `dtype` cannot run on `device` with this libtorch (float16 on CPU needs
// libtorch >= 2.1).
absl::Status CheckComputeSupport(c10::ScalarType dtype, c10::Device device);

// Number of usable CUDA devices (0 without CUDA).
int CudaDeviceCount();

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_DEVICE_H_
