// lensd.v1.Models: listing, loading and unloading models and lenses (loads and unloads run on
// the Background thread), tokenization and server info.
#ifndef LENSD_SERVER_MODELS_SERVICE_H_
#define LENSD_SERVER_MODELS_SERVICE_H_

#include "lensd/v1/models.grpc.pb.h"
#include "server/server_env.h"

namespace lensd::server {

class ModelsService final : public v1::Models::CallbackService {
 public:
  explicit ModelsService(const ServerEnv& env) : env_(env) {}

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const v1::GetModelRequest* request,
                                     v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* context,
                                      const v1::LoadModelRequest* request,
                                      v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* response) override;
  grpc::ServerUnaryReactor* LoadLens(grpc::CallbackServerContext* context,
                                     const v1::LoadLensRequest* request,
                                     v1::LensInfo* response) override;
  grpc::ServerUnaryReactor* UnloadLens(grpc::CallbackServerContext* context,
                                       const v1::UnloadLensRequest* request,
                                       v1::UnloadLensResponse* response) override;
  grpc::ServerUnaryReactor* LoadSae(grpc::CallbackServerContext* context,
                                    const v1::LoadSaeRequest* request,
                                    v1::SaeInfo* response) override;
  grpc::ServerUnaryReactor* UnloadSae(grpc::CallbackServerContext* context,
                                      const v1::UnloadSaeRequest* request,
                                      v1::UnloadSaeResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;

 private:
  const ServerEnv& env_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_MODELS_SERVICE_H_
