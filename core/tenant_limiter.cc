#include "core/tenant_limiter.h"

#include "absl/strings/str_cat.h"

namespace lensd {

absl::StatusOr<std::unique_ptr<TenantLimiter::Ticket>> TenantLimiter::Acquire(
    const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  Usage& usage = usage_[tenant];
  if (usage.requests >= max_) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant ", tenant, " has ", usage.requests,
                                                     " requests in flight (the limit is ", max_,
                                                     "); wait for some to finish"));
  }
  ++usage.requests;
  return std::make_unique<Ticket>(this, tenant);
}

absl::Status TenantLimiter::Ticket::Charge(int64_t bytes) {
  absl::MutexLock lock(&limiter_->mu_);
  Usage& usage = limiter_->usage_[tenant_];
  if (bytes > limiter_->max_bytes_ - usage.bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant ", tenant_, " has requests costing about ", usage.bytes >> 20,
        " MiB in flight; this one's ", bytes >> 20, " MiB more would pass the tenant bound of ",
        limiter_->max_bytes_ >> 20, " MiB (--max_tenant_bytes); wait for some to finish"));
  }
  usage.bytes += bytes;
  bytes_ += bytes;
  return absl::OkStatus();
}

int64_t TenantLimiter::in_flight(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  const auto it = usage_.find(tenant);
  return it == usage_.end() ? 0 : it->second.requests;
}

int64_t TenantLimiter::bytes_in_flight(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  const auto it = usage_.find(tenant);
  return it == usage_.end() ? 0 : it->second.bytes;
}

void TenantLimiter::Release(const std::string& tenant, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  Usage& usage = usage_[tenant];
  usage.bytes -= bytes;
  if (--usage.requests <= 0) usage_.erase(tenant);
}

}  // namespace lensd
