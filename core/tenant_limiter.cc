#include "core/tenant_limiter.h"

#include "absl/strings/str_cat.h"

namespace lensd {

absl::StatusOr<std::unique_ptr<TenantLimiter::Ticket>> TenantLimiter::Acquire(
    const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  int64_t& count = counts_[tenant];
  if (count >= max_) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant ", tenant, " has ", count,
                                                     " requests in flight (the limit is ", max_,
                                                     "); wait for some to finish"));
  }
  ++count;
  return std::make_unique<Ticket>(this, tenant);
}

int64_t TenantLimiter::in_flight(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  const auto it = counts_.find(tenant);
  return it == counts_.end() ? 0 : it->second;
}

void TenantLimiter::Release(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  if (--counts_[tenant] <= 0) counts_.erase(tenant);
}

}  // namespace lensd
