#include "core/engine/device.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lensd::engine {

int CudaDeviceCount() { return static_cast<int>(torch::cuda::device_count()); }

absl::StatusOr<c10::Device> ParseDevice(absl::string_view name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  int index = 0;
  if (name == "cuda") {
    index = 0;
  } else if (name.substr(0, 5) == "cuda:" && absl::SimpleAtoi(name.substr(5), &index) &&
             index >= 0) {
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", name, "\" is not one of cpu, cuda, cuda:<index>"));
  }
  const int count = CudaDeviceCount();
  if (index >= count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", name, " is not available: this process sees ", count, " CUDA device(s)",
        count == 0 ? " (libtorch built without CUDA, or no GPU)" : ""));
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

absl::StatusOr<c10::ScalarType> ParseDtype(absl::string_view name) {
  if (name == "float32" || name == "fp32") return c10::kFloat;
  if (name == "bfloat16" || name == "bf16") return c10::kBFloat16;
  if (name == "float16" || name == "fp16") return c10::kHalf;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype \"", name, "\" is not one of float32, bfloat16, float16"));
}

std::string DtypeName(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat:
      return "float32";
    case c10::kBFloat16:
      return "bfloat16";
    case c10::kHalf:
      return "float16";
    default:
      return c10::toString(dtype);
  }
}

absl::Status CheckComputeSupport(c10::ScalarType dtype, c10::Device device) {
#if TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 1)
  if (dtype == c10::kHalf && device.is_cpu()) {
    return absl::FailedPreconditionError(
        "float16 matmuls and norms are not implemented on CPU in libtorch " TORCH_VERSION
        "; load the model in bfloat16 or float32, or on a CUDA device");
  }
#endif
  (void)dtype;
  (void)device;
  return absl::OkStatus();
}

}  // namespace lensd::engine
