// lensd.v1.Models: listing, loading and unloading models and lenses (loads and unloads run on
// the Background thread), tokenization and server info.
#ifndef LENSD_SERVER_MODELS_SERVICE_H_
#define LENSD_SERVER_MODELS_SERVICE_H_

#include "lensd/v1/models.grpc.pb.h"
#include "server/call.h"
#include "server/server_env.h"

namespace lensd::server {

class ModelsService final : public v1::Models::Service {
 public:
  // Registers every method as a raw callback (rpc_handlers.h).
  explicit ModelsService(const ServerEnv& env);

  void ListModels(UnaryCall* call, const v1::ListModelsRequest* request,
                  v1::ListModelsResponse* response);
  void GetModel(UnaryCall* call, const v1::GetModelRequest* request, v1::ModelInfo* response);
  void LoadModel(UnaryCall* call, const v1::LoadModelRequest* request, v1::ModelInfo* response);
  void UnloadModel(UnaryCall* call, const v1::UnloadModelRequest* request,
                   v1::UnloadModelResponse* response);
  void LoadLens(UnaryCall* call, const v1::LoadLensRequest* request, v1::LensInfo* response);
  void UnloadLens(UnaryCall* call, const v1::UnloadLensRequest* request,
                  v1::UnloadLensResponse* response);
  void LoadSae(UnaryCall* call, const v1::LoadSaeRequest* request, v1::SaeInfo* response);
  void UnloadSae(UnaryCall* call, const v1::UnloadSaeRequest* request,
                 v1::UnloadSaeResponse* response);
  void Tokenize(UnaryCall* call, const v1::TokenizeRequest* request,
                v1::TokenizeResponse* response);
  void Detokenize(UnaryCall* call, const v1::DetokenizeRequest* request,
                  v1::DetokenizeResponse* response);
  void GetServerInfo(UnaryCall* call, const v1::GetServerInfoRequest* request,
                     v1::ServerInfo* response);

 private:
  const ServerEnv& env_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_MODELS_SERVICE_H_
