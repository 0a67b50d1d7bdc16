// Per-tenant limits on requests in flight (queued or running, across models), so that one
// tenant's flood is refused with RESOURCE_EXHAUSTED instead of filling every queue.
// Thread-safe.
#ifndef LENSD_CORE_TENANT_LIMITER_H_
#define LENSD_CORE_TENANT_LIMITER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace lensd {

class TenantLimiter {
 public:
  // Releases its slot when destroyed.
  class Ticket {
   public:
    Ticket(TenantLimiter* limiter, std::string tenant)
        : limiter_(limiter), tenant_(std::move(tenant)) {}
    ~Ticket() { limiter_->Release(tenant_); }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    TenantLimiter* limiter_;
    std::string tenant_;
  };

  explicit TenantLimiter(int64_t max_per_tenant) : max_(max_per_tenant) {}

  // RESOURCE_EXHAUSTED when the tenant already has the maximum in flight.
  absl::StatusOr<std::unique_ptr<Ticket>> Acquire(const std::string& tenant);
  int64_t in_flight(const std::string& tenant) const;

 private:
  void Release(const std::string& tenant);

  const int64_t max_;
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd

#endif  // LENSD_CORE_TENANT_LIMITER_H_
