// The exception firewall: what each kind of libtorch failure becomes, and that a CUDA error which
// poisons the context ends the process (so that a supervisor restarts it) instead of answering.
#include "core/engine/model/torch_errors.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <functional>
#include <new>
#include <stdexcept>

#include "core/engine/model/device.h"

namespace lensd::engine {
namespace {

const c10::SourceLocation kHere{"TestBody", __FILE__, __LINE__};

absl::Status Throwing(const std::function<void()>& thrower) {
  return CatchTorch("model m", [&]() -> absl::Status {
    thrower();
    return absl::OkStatus();
  });
}

TEST(CatchTorch, OutOfMemoryIsResourceExhaustedNamingTheContextAndSizes) {
  const absl::Status s = Throwing([] {
    throw c10::OutOfMemoryError(kHere, "CUDA out of memory. Tried to allocate 2.00 GiB.\nmore");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "model m: out of device memory: CUDA out of memory. Tried to allocate "
            "2.00 GiB.");
}

TEST(CatchTorch, HostOutOfMemoryIsResourceExhausted) {
  const absl::Status s = Throwing([] { throw std::bad_alloc(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "model m: out of host memory");
}

TEST(CatchTorch, OtherErrorsAreInternal) {
  EXPECT_EQ(Throwing([] { throw c10::Error(kHere, "shape mismatch"); }),
            absl::InternalError("model m: shape mismatch"));
  EXPECT_EQ(Throwing([] { throw std::runtime_error("boom"); }),
            absl::InternalError("model m: boom"));
  // A CUDA error that leaves the context usable (cudaErrorInvalidValue) is answered, not fatal.
  EXPECT_EQ(Throwing([] { throw c10::AcceleratorError(kHere, 1, "CUDA error: invalid argument"); }),
            absl::InternalError("model m: CUDA error: invalid argument"));
}

TEST(CatchTorchDeathTest, APoisonedContextEndsTheProcessWithItsStatus) {
  for (const int code : {214, 700, 710, 714, 719}) EXPECT_TRUE(PoisonsDevice(code)) << code;
  for (const int code : {0, 1, 2, 98, 720}) EXPECT_FALSE(PoisonsDevice(code)) << code;
  EXPECT_EXIT(
      (void)Throwing([] {
        throw c10::AcceleratorError(kHere, 710, "CUDA error: device-side assert triggered");
      }),
      ::testing::ExitedWithCode(kExitPoisonedDevice),
      "lensd: fatal: model m: CUDA error: device-side assert triggered; the CUDA context is "
      "unusable");
}

}  // namespace
}  // namespace lensd::engine
