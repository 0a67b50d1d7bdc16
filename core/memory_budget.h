// Bytes of weights each device may hold, and what holds them. A reservation that would go over a
// device's budget is refused with RESOURCE_EXHAUSTED naming the sizes.
// Thread-safe.
#ifndef LENSD_CORE_MEMORY_BUDGET_H_
#define LENSD_CORE_MEMORY_BUDGET_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace lensd {

// "1.5 GiB", "830 KiB", "12 B".
std::string HumanBytes(int64_t bytes);
// "16GiB", "512MiB", "1e9", "0.8" (a fraction, with `total`): bytes. INVALID_ARGUMENT otherwise.
absl::StatusOr<int64_t> ParseBytes(const std::string& text, int64_t total);

class MemoryBudget {
 public:
  struct Device {
    std::string name;
    int64_t budget = 0;
    int64_t used = 0;
  };

  explicit MemoryBudget(std::map<std::string, int64_t> budgets) : budgets_(std::move(budgets)) {}

  // Counts `bytes` of `what` against `device`. NOT_FOUND for a device without a budget.
  absl::Status Reserve(const std::string& device, int64_t bytes, const std::string& what);
  // Counts bytes already allocated (a load that took more than its estimate), over budget or not.
  void Charge(const std::string& device, int64_t bytes);
  // Returns bytes to the device (never below zero).
  void Release(const std::string& device, int64_t bytes);
  std::vector<Device> Devices() const;

 private:
  mutable absl::Mutex mu_;
  const std::map<std::string, int64_t> budgets_;
  std::map<std::string, int64_t> used_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd

#endif  // LENSD_CORE_MEMORY_BUDGET_H_
