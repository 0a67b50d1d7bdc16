#include "server/call.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::server {
namespace {

std::string Metadata(const grpc::CallbackServerContext* context, const char* key) {
  const auto& md = context->client_metadata();
  const auto it = md.find(key);
  return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
}

std::string NewRequestId() {
  static std::atomic<uint64_t> counter{0};
  unsigned char bytes[6] = {};
  RAND_bytes(bytes, sizeof(bytes));
  return absl::StrCat(absl::BytesToHexString(
                          absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes))),
                      "-", counter.fetch_add(1));
}

// "1.2.3" -> {1, 2, 3}; missing parts are 0. False for anything else.
bool ParseVersion(absl::string_view text, int out[3]) {
  out[0] = out[1] = out[2] = 0;
  int i = 0;
  for (absl::string_view part : absl::StrSplit(text.substr(0, text.find_first_of("-+")), '.')) {
    if (i == 3 || !absl::SimpleAtoi(part, &out[i])) return false;
    ++i;
  }
  return i > 0;
}

bool OlderThan(absl::string_view version, absl::string_view minimum) {
  int v[3];
  int m[3];
  if (!ParseVersion(version, v) || !ParseVersion(minimum, m)) return false;
  for (int i = 0; i < 3; ++i) {
    if (v[i] != m[i]) return v[i] < m[i];
  }
  return false;
}

}  // namespace

CallInfo::CallInfo(const ServerEnv& env, grpc::CallbackServerContext* context, std::string method)
    : env_(env), context_(context), method_(std::move(method)), start_(absl::Now()) {
  request_id_ = Metadata(context, "x-request-id");
  if (request_id_.empty() || request_id_.size() > 128) request_id_ = NewRequestId();
  context->AddInitialMetadata("x-request-id", request_id_);
}

absl::Time CallInfo::deadline() const {
  const auto deadline = context_->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

absl::Status CallInfo::Admit(Role needed) {
  // The token first: an unauthenticated caller learns nothing about the server (not its version).
  LENSD_RETURN_IF_ERROR(Authenticate(needed));
  const std::string client_version = Metadata(context_, "x-lensd-client-version");
  if (!client_version.empty() && !env_.min_client_version.empty() &&
      OlderThan(client_version, env_.min_client_version)) {
    return absl::FailedPreconditionError(
        absl::StrCat("client version ", ShownName(client_version),
                     " is older than this server serves (lensd ", env_.version,
                     " needs clients >= ", env_.min_client_version, "); upgrade the lensd client"));
  }
  return absl::OkStatus();
}

absl::Status CallInfo::Authenticate(Role needed) {
  if (!env_.tokens.has_value()) {
    principal_ = {"anonymous", Role::kAdmin};
    return absl::OkStatus();
  }
  const std::string header = Metadata(context_, "authorization");
  if (header.empty()) {
    return absl::UnauthenticatedError(
        "this server needs a token: send metadata \"authorization: Bearer <token>\"");
  }
  absl::StatusOr<std::string> token = BearerToken(header);
  if (!token.ok()) return token.status();
  absl::StatusOr<Principal> principal = env_.tokens->Authenticate(*token);
  if (!principal.ok()) return principal.status();
  principal_ = *principal;
  if (principal_.role < needed) {
    return absl::PermissionDeniedError(absl::StrCat(method_, " needs the ", RoleName(needed),
                                                    " role; tenant ", principal_.tenant, " has ",
                                                    RoleName(principal_.role)));
  }
  return absl::OkStatus();
}

absl::Status CallInfo::Charge(const RequestCost& cost) {
  if (absl::Status s = CheckRequestCost(cost, env_.limits); !s.ok()) return s;
  if (ticket_ == nullptr) return absl::OkStatus();
  return ticket_->Charge(std::max(cost.answer_bytes, cost.work_bytes));
}

void CallInfo::Record(const absl::Status& status) {
  ticket_.reset();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
  const char* code = CodeName(status.code());
  if (env_.metrics != nullptr) {
    env_.metrics->Request(method_, code, seconds);
    if (tokens_ > 0 && !model_.empty() && status.ok()) env_.metrics->Tokens(model_, tokens_);
  }
  if (!env_.log_requests) return;
  nlohmann::json line = {
      {"time", absl::FormatTime(absl::RFC3339_full, start_, absl::UTCTimeZone())},
      {"request_id", request_id_},
      {"method", method_},
      {"tenant", principal_.tenant},
      {"code", code},
      {"duration_ms", seconds * 1e3}};
  if (!model_.empty()) line["model"] = model_;
  if (tokens_ > 0) line["tokens"] = tokens_;
  if (batch_ > 0) line["batch_size"] = batch_;
  if (!status.ok()) line["error"] = Truncated(status.message(), kMaxErrorMessageBytes);
  std::cerr << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"
            << std::flush;
}

absl::Status Serialize(const google::protobuf::Message& message, grpc::ByteBuffer* out) {
  bool own = false;
  const grpc::Status s =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, out, &own);
  if (s.ok()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cannot serialize ", message.GetTypeName(), ": ", s.error_message()));
}

void UnaryCall::Done(const absl::Status& status) {
  absl::Status final = status;
  if (final.ok()) final = Serialize(*response_, out_);
  const auto bytes = final.ok() ? static_cast<int64_t>(out_->Length()) : 0;
  if (bytes > info_.env().limits.max_message_bytes) {
    final = absl::ResourceExhaustedError(absl::StrCat(
        "the answer is ", bytes >> 20, " MiB, over the server's bound of ",
        info_.env().limits.max_message_bytes >> 20, " MiB (--max_message_bytes); ask for less"));
  }
  info_.Record(final);
  Finish(ToGrpcStatus(final));
}

}  // namespace lensd::server
