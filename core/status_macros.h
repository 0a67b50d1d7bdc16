// Status propagation macros (Debian's abseil ships none).
//
//   LENSD_RETURN_IF_ERROR(DoThing());
//   LENSD_ASSIGN_OR_RETURN(auto value, ComputeValue());
//   LENSD_ASSIGN_OR_RETURN(existing, ComputeValue());
#ifndef LENSD_CORE_STATUS_MACROS_H_
#define LENSD_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LENSD_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status lensd_status_ = (expr);         \
    if (!lensd_status_.ok()) return lensd_status_; \
  } while (false)

#define LENSD_STATUS_CONCAT_INNER_(a, b) a##b
#define LENSD_STATUS_CONCAT_(a, b) LENSD_STATUS_CONCAT_INNER_(a, b)

#define LENSD_ASSIGN_OR_RETURN(lhs, rexpr) \
  LENSD_ASSIGN_OR_RETURN_IMPL_(LENSD_STATUS_CONCAT_(lensd_statusor_, __COUNTER__), lhs, rexpr)

// `lhs` may be a declaration, so it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define LENSD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
// NOLINTEND(bugprone-macro-parentheses)

#endif  // LENSD_CORE_STATUS_MACROS_H_
