// Per-tenant limits on requests in flight (queued or running, across models) and on the bytes
// their estimated costs add up to, so that one tenant's flood is refused with RESOURCE_EXHAUSTED
// instead of filling every queue or the server's memory. Thread-safe.
#ifndef LENSD_CORE_TENANT_LIMITER_H_
#define LENSD_CORE_TENANT_LIMITER_H_

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace lensd {

class TenantLimiter {
 public:
  // Releases its slot and the bytes charged to it when destroyed.
  class Ticket {
   public:
    Ticket(TenantLimiter* limiter, std::string tenant)
        : limiter_(limiter), tenant_(std::move(tenant)) {}
    ~Ticket() { limiter_->Release(tenant_, bytes_); }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

    // Adds a request's estimated bytes to its tenant's total; RESOURCE_EXHAUSTED (nothing
    // charged) when the total would pass the tenant bound.
    absl::Status Charge(int64_t bytes);

   private:
    TenantLimiter* limiter_;
    std::string tenant_;
    int64_t bytes_ = 0;
  };

  explicit TenantLimiter(int64_t max_per_tenant,
                         int64_t max_bytes_per_tenant = std::numeric_limits<int64_t>::max())
      : max_(max_per_tenant), max_bytes_(max_bytes_per_tenant) {}

  // RESOURCE_EXHAUSTED when the tenant already has the maximum in flight.
  absl::StatusOr<std::unique_ptr<Ticket>> Acquire(const std::string& tenant);
  int64_t in_flight(const std::string& tenant) const;
  int64_t bytes_in_flight(const std::string& tenant) const;

 private:
  struct Usage {
    int64_t requests = 0;
    int64_t bytes = 0;
  };
  void Release(const std::string& tenant, int64_t bytes);

  const int64_t max_;
  const int64_t max_bytes_;
  mutable absl::Mutex mu_;
  std::map<std::string, Usage> usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd

#endif  // LENSD_CORE_TENANT_LIMITER_H_
