// Requests as they arrive: lensd's services take the raw bytes and parse them here, so that a
// malformed request (a string field that is not UTF-8, a truncated or garbled message) gets
// INVALID_ARGUMENT naming the message, the field and what is wrong, instead of gRPC's bare
// UNIMPLEMENTED.
#ifndef LENSD_SERVER_WIRE_PARSE_H_
#define LENSD_SERVER_WIRE_PARSE_H_

#include <grpcpp/support/byte_buffer.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace lensd::server {

// Parses `bytes` into `message` (cleared first). INVALID_ARGUMENT such as "request is not a valid
// lensd.v1.DecodeRequest: input.text is not UTF-8 (byte 3 of the field)".
absl::Status ParseRequest(absl::string_view bytes, google::protobuf::Message* message);
absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);

// Why `bytes` does not parse as a message of `message`'s type: the first field whose string is
// not UTF-8 or whose bytes end early, by path ("input.text", "hook_points[2]"); "" when nothing
// specific is found.
std::string DescribeMalformed(absl::string_view bytes, const google::protobuf::Message& message);

}  // namespace lensd::server

#endif  // LENSD_SERVER_WIRE_PARSE_H_
