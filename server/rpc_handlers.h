// How lensd's services meet gRPC. Every method is registered as a raw callback method: the
// request's bytes are parsed here (wire_parse.h), so that a malformed request (a string that is
// not UTF-8, a truncated message) is answered INVALID_ARGUMENT naming the field, where gRPC's
// typed handlers answer a bare UNIMPLEMENTED; the call (call.h) owns the request and response
// and serializes the response as it finishes. No exception crosses into gRPC: one escaping a
// method before it hands its call on is logged and answered INTERNAL.
//
//   LensService::LensService(const ServerEnv& env) : env_(env) {
//     MarkMethodRawCallback(MethodIndex(v1::Lens::service_full_name(), "Decode"),
//                           UnaryHandler(env, "Decode", this, &LensService::Decode));
//   }
#ifndef LENSD_SERVER_RPC_HANDLERS_H_
#define LENSD_SERVER_RPC_HANDLERS_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/server_callback_handlers.h>
#include <grpcpp/support/byte_buffer.h>

#include <exception>
#include <memory>

#include "absl/status/status.h"
#include "server/call.h"
#include "server/server_env.h"
#include "server/wire_parse.h"

namespace lensd::server {

// The index of `method` in the service's descriptor (the order gRPC's generated code registers
// methods in); aborts naming both when there is none (a programming error).
int MethodIndex(const char* service, const char* method);

// The answer for an exception that escaped `method` (logged with it).
absl::Status EscapedException(const char* method, const std::exception* e);

template <typename Service, typename Request, typename Response>
grpc::internal::MethodHandler* UnaryHandler(const ServerEnv& env, const char* method,
                                            Service* service,
                                            void (Service::*fn)(UnaryCall*, const Request*,
                                                                Response*)) {
  return new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
      [&env, method, service, fn](grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw,
                                  grpc::ByteBuffer* out) -> grpc::ServerUnaryReactor* {
        auto owned_request = std::make_unique<Request>();
        auto owned_response = std::make_unique<Response>();
        Request* request = owned_request.get();
        Response* response = owned_response.get();
        auto* call = new UnaryCall(env, context, method, std::move(owned_request),
                                   std::move(owned_response), out);
        if (absl::Status s = ParseRequest(*raw, request); !s.ok()) {
          call->Done(s);
          return call;
        }
        // A method hands its call on (to a work item or Done) as its last step, so an exception
        // means the call is still ours to finish.
        try {
          (service->*fn)(call, request, response);
        } catch (const std::exception& e) {
          call->Done(EscapedException(method, &e));
        } catch (...) {
          call->Done(EscapedException(method, nullptr));
        }
        return call;
      });
}

template <typename Service, typename Request, typename Message>
grpc::internal::MethodHandler* StreamHandler(const ServerEnv& env, const char* method,
                                             Service* service,
                                             void (Service::*fn)(StreamCall<Message>*,
                                                                 const Request*)) {
  return new grpc::internal::CallbackServerStreamingHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
      [&env, method, service, fn](
          grpc::CallbackServerContext* context,
          const grpc::ByteBuffer* raw) -> grpc::ServerWriteReactor<grpc::ByteBuffer>* {
        auto owned_request = std::make_unique<Request>();
        Request* request = owned_request.get();
        auto* call = new StreamCall<Message>(env, context, method, std::move(owned_request));
        if (absl::Status s = ParseRequest(*raw, request); !s.ok()) {
          call->Done(s);
          return call;
        }
        try {
          (service->*fn)(call, request);
        } catch (const std::exception& e) {
          call->Done(EscapedException(method, &e));
        } catch (...) {
          call->Done(EscapedException(method, nullptr));
        }
        return call;
      });
}

}  // namespace lensd::server

#endif  // LENSD_SERVER_RPC_HANDLERS_H_
