// lensd.v1.Lens: validates and converts each request, submits it to the model's scheduler, and
// returns; the work runs on the model's workers (server/lens_work.h).
#ifndef LENSD_SERVER_LENS_SERVICE_H_
#define LENSD_SERVER_LENS_SERVICE_H_

#include "lensd/v1/lens.grpc.pb.h"
#include "server/call.h"
#include "server/server_env.h"

namespace lensd::server {

class LensService final : public v1::Lens::Service {
 public:
  // Registers every method as a raw callback (rpc_handlers.h).
  explicit LensService(const ServerEnv& env);

  void Decode(UnaryCall* call, const v1::DecodeRequest* request, v1::DecodeResponse* response);
  void StreamDecode(StreamCall<v1::StreamDecodeResponse>* call, const v1::DecodeRequest* request);
  void Generate(StreamCall<v1::GenerateResponse>* call, const v1::GenerateRequest* request);
  void GetActivations(StreamCall<v1::TensorChunk>* call, const v1::GetActivationsRequest* request);
  void LayerAttribution(UnaryCall* call, const v1::LayerAttributionRequest* request,
                        v1::LayerAttributionResponse* response);
  void ActivationPatching(StreamCall<v1::ActivationPatchingResponse>* call,
                          const v1::ActivationPatchingRequest* request);

 private:
  const ServerEnv& env_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_LENS_SERVICE_H_
