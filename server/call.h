// Per-RPC plumbing shared by every service method:
//   CallInfo    request id, authentication, role and client-version checks, and on finish one
//               metrics sample and one structured log line (JSON on stderr).
//   UnaryCall   a unary reactor that finishes exactly once and turns a client cancel into a
//               Cancellation the worker sees.
//   StreamCall  a server-streaming reactor the worker writes to from its own thread without ever
//               waiting for the client (a bounded buffer per call), with cancellation.
// Reactors delete themselves in OnDone.
#ifndef LENSD_SERVER_CALL_H_
#define LENSD_SERVER_CALL_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/auth.h"
#include "core/scheduler.h"
#include "core/shown_text.h"
#include "core/tenant_limiter.h"
#include "google/protobuf/message.h"
#include "server/request_cost.h"
#include "server/server_env.h"
#include "server/status_util.h"

namespace lensd::server {

class CallInfo {
 public:
  CallInfo(const ServerEnv& env, grpc::CallbackServerContext* context, std::string method);

  // UNAUTHENTICATED without a valid bearer token (when auth is on), PERMISSION_DENIED when the
  // token's role is below `needed`, FAILED_PRECONDITION for a client older than the server
  // serves.
  absl::Status Admit(Role needed);
  const Principal& principal() const { return principal_; }
  const std::string& request_id() const { return request_id_; }
  absl::Time deadline() const;
  const ServerEnv& env() const { return env_; }

  void set_model(const std::string& model) { model_ = ShownName(model); }
  void add_tokens(int64_t tokens) { tokens_ += tokens; }
  void set_batch_size(int batch) { batch_ = batch; }
  // Keeps the tenant's in-flight slot until Record: released before the client has its answer,
  // so that a client's next call never finds its previous one still counted.
  void Hold(std::unique_ptr<TenantLimiter::Ticket> ticket) { ticket_ = std::move(ticket); }
  // Admission by cost: RESOURCE_EXHAUSTED when the estimate passes a per-request bound
  // (request_cost.h) or, added to the tenant's requests in flight, the tenant bound; else the
  // estimate counts against the tenant until Record.
  absl::Status Charge(const RequestCost& cost);
  // Releases the ticket, then writes the metrics and the log line; called once, as the RPC
  // finishes.
  void Record(const absl::Status& status);

 private:
  absl::Status Authenticate(Role needed);

  const ServerEnv& env_;
  grpc::CallbackServerContext* context_;
  std::string method_;
  std::string request_id_;
  absl::Time start_;
  Principal principal_;
  std::string model_;
  int64_t tokens_ = 0;
  int batch_ = 0;
  std::unique_ptr<TenantLimiter::Ticket> ticket_;
};

// Owns the parsed request and the response (rpc_handlers.h makes it); Done serializes the
// response into gRPC's buffer.
class UnaryCall : public grpc::ServerUnaryReactor {
 public:
  UnaryCall(const ServerEnv& env, grpc::CallbackServerContext* context, std::string method,
            std::unique_ptr<google::protobuf::Message> request,
            std::unique_ptr<google::protobuf::Message> response, grpc::ByteBuffer* out)
      : info_(env, context, std::move(method)),
        cancellation_(std::make_shared<Cancellation>()),
        request_(std::move(request)),
        response_(std::move(response)),
        out_(out) {}

  CallInfo& info() { return info_; }
  std::shared_ptr<const Cancellation> cancellation() const { return cancellation_; }
  // Records and finishes the RPC (with the response when `status` is OK); call exactly once,
  // from any thread. RESOURCE_EXHAUSTED instead when the response passes --max_message_bytes.
  void Done(const absl::Status& status);

  void OnCancel() override { cancellation_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  CallInfo info_;
  std::shared_ptr<Cancellation> cancellation_;
  std::unique_ptr<google::protobuf::Message> request_;
  std::unique_ptr<google::protobuf::Message> response_;
  grpc::ByteBuffer* out_;
};

// A message serialized for the wire: OK, or INTERNAL when protobuf cannot serialize it.
absl::Status Serialize(const google::protobuf::Message& message, grpc::ByteBuffer* out);

// A server stream of `Message`s, written as serialized buffers; owns the parsed request.
template <typename Message>
class StreamCall : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  StreamCall(const ServerEnv& env, grpc::CallbackServerContext* context, std::string method,
             std::unique_ptr<google::protobuf::Message> request)
      : info_(env, context, std::move(method)),
        cancellation_(std::make_shared<Cancellation>()),
        request_(std::move(request)) {}

  CallInfo& info() { return info_; }
  std::shared_ptr<const Cancellation> cancellation() const { return cancellation_; }

  // Queues a message and returns at once: the model's worker never waits for a client. CANCELLED
  // once the client is gone; RESOURCE_EXHAUSTED (the call fails, what it queued is dropped) when
  // the client has left more than limits.max_stream_buffer_bytes unread.
  absl::Status Write(const Message& message) {
    grpc::ByteBuffer buffer;
    if (absl::Status s = Serialize(message, &buffer); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    if (broken_ || cancellation_->cancelled()) return StoppedByClient(info_.deadline(), "stream");
    const auto size = static_cast<int64_t>(buffer.Length());
    const int64_t bound = info_.env().limits.max_stream_buffer_bytes;
    if (queued_bytes_ > 0 && queued_bytes_ + size > bound) {
      const int64_t unread = queued_bytes_;
      // Keep only the message being written (gRPC holds a pointer to it).
      while (queue_.size() > 1) {
        queued_bytes_ -= static_cast<int64_t>(queue_.back().Length());
        queue_.pop_back();
      }
      return absl::ResourceExhaustedError(absl::StrCat(
          "the client left ", unread >> 20, " MiB of this stream unread (the server buffers at ",
          "most ", bound >> 20, " MiB per stream, --max_stream_buffer_bytes); read the stream ",
          "as it arrives or ask for less"));
    }
    queued_bytes_ += size;
    queue_.push_back(std::move(buffer));
    if (writing_) return absl::OkStatus();
    writing_ = true;
    const grpc::ByteBuffer* next =
        &queue_.front();  // stays put: only OnWriteDone pops, after this write
    mu_.Unlock();
    this->StartWrite(next);  // outside the lock, in case OnWriteDone runs inline
    mu_.Lock();
    return absl::OkStatus();
  }

  // Finishes after the queued messages are written; call exactly once, from any thread.
  void Done(const absl::Status& status) {
    info_.Record(status);
    bool finish = false;
    absl::Status final;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      final_ = broken_ ? absl::CancelledError("the client went away") : status;
      final = final_;
      // With a write in flight, OnWriteDone finishes.
      finish = !writing_;
    }
    // Finish outside the lock: OnDone (which deletes this) may follow at once.
    if (finish) this->Finish(ToGrpcStatus(final));
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    absl::Status final;
    const grpc::ByteBuffer* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      queued_bytes_ -= static_cast<int64_t>(queue_.front().Length());
      queue_.pop_front();
      if (!ok) broken_ = true;
      if (!broken_ && !queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        finish = done_;
        final = broken_ ? absl::CancelledError("the client went away") : final_;
      }
    }
    if (next != nullptr) {
      this->StartWrite(next);
    } else if (finish) {
      this->Finish(ToGrpcStatus(final));
    }
  }

  // Runs `hook` once the client cancels or the deadline passes (at once if it already has), on
  // gRPC's thread; it must not block.
  void OnCancelled(std::function<void()> hook) {
    {
      absl::MutexLock lock(&mu_);
      if (!cancel_seen_) {
        on_cancel_ = std::move(hook);
        return;
      }
    }
    hook();
  }

  void OnCancel() override {
    cancellation_->Cancel();
    std::function<void()> hook;
    {
      absl::MutexLock lock(&mu_);
      cancel_seen_ = true;
      hook = std::move(on_cancel_);
    }
    if (hook) hook();
  }
  void OnDone() override { delete this; }

 private:
  CallInfo info_;
  std::shared_ptr<Cancellation> cancellation_;
  std::unique_ptr<google::protobuf::Message> request_;
  absl::Mutex mu_;
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
  bool cancel_seen_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);  // front: the one being written
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_CALL_H_
