// lensd.v1.Lens: validates and converts each request, submits it to the model's scheduler, and
// returns; the work runs on the model's workers (server/lens_work.h).
#ifndef LENSD_SERVER_LENS_SERVICE_H_
#define LENSD_SERVER_LENS_SERVICE_H_

#include "lensd/v1/lens.grpc.pb.h"
#include "server/server_env.h"

namespace lensd::server {

class LensService final : public v1::Lens::CallbackService {
 public:
  explicit LensService(const ServerEnv& env) : env_(env) {}

  grpc::ServerUnaryReactor* Decode(grpc::CallbackServerContext* context,
                                   const v1::DecodeRequest* request,
                                   v1::DecodeResponse* response) override;
  grpc::ServerWriteReactor<v1::StreamDecodeResponse>* StreamDecode(
      grpc::CallbackServerContext* context, const v1::DecodeRequest* request) override;
  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerWriteReactor<v1::TensorChunk>* GetActivations(
      grpc::CallbackServerContext* context, const v1::GetActivationsRequest* request) override;
  grpc::ServerUnaryReactor* LayerAttribution(grpc::CallbackServerContext* context,
                                             const v1::LayerAttributionRequest* request,
                                             v1::LayerAttributionResponse* response) override;

 private:
  const ServerEnv& env_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_LENS_SERVICE_H_
