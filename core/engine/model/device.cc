#include "core/engine/model/device.h"

#include <malloc.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#define LENSD_HAVE_CUDA_ALLOCATOR 1
#endif

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/engine/served/engine_factory.h"
#include "core/status_macros.h"

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
    return absl::InvalidArgumentError(absl::StrCat(
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
#ifdef LENSD_HAVE_CUDA_ALLOCATOR
  // bfloat16 arithmetic needs compute capability 8.0 (Ampere) or newer.
  if (device.is_cuda() && dtype == c10::kBFloat16) {
    cudaDeviceProp props{};
    if (cudaGetDeviceProperties(&props, device.index()) == cudaSuccess && props.major < 8) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device cuda:", device.index(), " (", props.name, ", compute capability ", props.major,
          ".", props.minor, ") cannot run bfloat16; it can run float32 and float16"));
    }
  }
#endif
  (void)dtype;
  (void)device;
  return absl::OkStatus();
}

namespace {
// 0 auto, 1 float32, 2 bfloat16; written once at start-up, read by training runs.
std::atomic<int> cpu_precision{0};
}  // namespace

bool CpuHasBf16Arithmetic() { return __builtin_cpu_supports("avx512bf16"); }

bool CpuAutoUsesBf16() {
  const int p = cpu_precision.load();
  return p == 2 || (p == 0 && CpuHasBf16Arithmetic());
}

absl::Status SetCpuPrecision(const std::string& name) {
  if (name == "auto") {
    cpu_precision = 0;
  } else if (name == "float32") {
    cpu_precision = 1;
  } else if (name == "bfloat16") {
    cpu_precision = 2;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu precision \"", name, "\" is not one of auto, float32, bfloat16"));
  }
  return absl::OkStatus();
}

std::string CpuPrecision() { return CpuAutoUsesBf16() ? "bfloat16" : "float32"; }

bool PoisonsDevice(int32_t cuda_error) {
  // The CUDA errors after which the context is unusable until the process ends (cudaError_t:
  // 214 ECC uncorrectable, 700 illegal address, 710 device-side assert, 714-719 hardware stack,
  // illegal instruction, misaligned address, invalid address space, invalid PC, launch failure).
  return cuda_error == 214 || cuda_error == 700 || cuda_error == 710 ||
         (cuda_error >= 714 && cuda_error <= 719);
}

void ExitOnPoisonedDevice(absl::string_view context, absl::string_view message) {
  std::fprintf(stderr,
               "lensd: fatal: %.*s: %.*s; the CUDA context is unusable, exiting so that a "
               "supervisor restarts the server\n",
               static_cast<int>(context.size()), context.data(), static_cast<int>(message.size()),
               message.data());
  std::fflush(stderr);
  std::_Exit(kExitPoisonedDevice);
}

std::vector<std::string> AvailableDevices() {
  std::vector<std::string> out = {"cpu"};
  for (int i = 0; i < CudaDeviceCount(); ++i) out.push_back(absl::StrCat("cuda:", i));
  return out;
}

absl::StatusOr<std::string> CanonicalDevice(const std::string& name) {
  LENSD_ASSIGN_OR_RETURN(const c10::Device device, ParseDevice(name));
  if (device.is_cpu()) return std::string("cpu");
  return absl::StrCat("cuda:", device.has_index() ? device.index() : 0);
}

int64_t DeviceTotalBytes(const std::string& device) {
#ifdef LENSD_HAVE_CUDA_ALLOCATOR
  if (device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (!absl::SimpleAtoi(device.substr(5), &index)) return 0;
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return 0;
    return static_cast<int64_t>(total_bytes);
  }
#endif
  if (device != "cpu") return 0;
  return static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) *
         static_cast<int64_t>(sysconf(_SC_PAGE_SIZE));
}

DeviceMemoryReading ReadDeviceMemory(const std::string& device) {
  DeviceMemoryReading r;
#ifdef LENSD_HAVE_CUDA_ALLOCATOR
  int index = 0;
  if (device.rfind("cuda:", 0) == 0 && absl::SimpleAtoi(device.substr(5), &index) &&
      index < CudaDeviceCount()) {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      r.total = static_cast<int64_t>(total_bytes);
      r.free = static_cast<int64_t>(free_bytes);
    }
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    r.allocated = stats.allocated_bytes[aggregate].current;
    r.reserved = stats.reserved_bytes[aggregate].current;
    return r;
  }
#endif
  if (device != "cpu") return r;
  r.total = DeviceTotalBytes(device);
  r.free = static_cast<int64_t>(sysconf(_SC_AVPHYS_PAGES)) *
           static_cast<int64_t>(sysconf(_SC_PAGE_SIZE));
  return r;
}

void ReleaseFreedMemory() {
#ifdef LENSD_HAVE_CUDA_ALLOCATOR
  if (CudaDeviceCount() > 0) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  malloc_trim(0);
}

}  // namespace lensd::engine
