// The one place where absl::Status becomes grpc::Status (codes map one to one; the message is
// kept as the engine and core wrote it).
#ifndef LENSD_SERVER_STATUS_UTIL_H_
#define LENSD_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace lensd::server {

grpc::Status ToGrpcStatus(const absl::Status& status);
// "OK", "INVALID_ARGUMENT", ... as gRPC spells the code.
const char* CodeName(absl::StatusCode code);

}  // namespace lensd::server

#endif  // LENSD_SERVER_STATUS_UTIL_H_
