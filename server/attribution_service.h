// lensd.v1.Attribution: SAE feature activations and node attribution. Validates and converts
// each request, then runs it on the model's scheduler like the Lens service's work.
#ifndef LENSD_SERVER_ATTRIBUTION_SERVICE_H_
#define LENSD_SERVER_ATTRIBUTION_SERVICE_H_

#include "lensd/v1/attribution.grpc.pb.h"
#include "server/call.h"
#include "server/server_env.h"

namespace lensd::server {

class AttributionService final : public v1::Attribution::Service {
 public:
  // Registers every method as a raw callback (rpc_handlers.h).
  explicit AttributionService(const ServerEnv& env);

  void EncodeSae(UnaryCall* call, const v1::EncodeSaeRequest* request,
                 v1::EncodeSaeResponse* response);
  void NodeAttribution(UnaryCall* call, const v1::NodeAttributionRequest* request,
                       v1::NodeAttributionResponse* response);

 private:
  const ServerEnv& env_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_ATTRIBUTION_SERVICE_H_
