// lensctl's renderings: the per-layer decode table, and tensors written as .safetensors or .npy.
#ifndef LENSD_CLIENTS_CLI_OUTPUT_H_
#define LENSD_CLIENTS_CLI_OUTPUT_H_

#include <map>
#include <string>
#include <vector>

#include "lensd/v1/lens.pb.h"
#include "lensd/v1/patching.pb.h"

namespace lensctl {

// A token's text made printable in a table cell: leading/inner spaces as "_", newlines as "\n",
// cut to `width` characters with an ellipsis.
std::string Readable(const std::string& text, size_t width);

// Layers as rows (the model's output last), input positions as columns; each cell the top-1
// token and its probability.
std::string DecodeTable(const lensd::v1::DecodeResponse& response, size_t width);

// Lenses side by side, one decode of the same prompt each: a row per layer (the model's output
// last), and per lens the top-1 token at the last position with its probability, and the mean
// over positions of KL(model || lens) and of the next-token cross-entropy.
std::string SideBySideTable(const std::vector<lensd::v1::DecodeResponse>& responses, size_t width);

// Each patching grid as a table: layers as rows (the last on top), positions (with their clean
// tokens) or heads as columns, each cell the normalized effect; a [layer, position, head] grid
// shows per cell the head with the largest |effect| ("h2 0.83").
std::string PatchingTables(const lensd::v1::ActivationPatchingResult& result);

// A message as one line of JSON.
std::string JsonOf(const google::protobuf::Message& message);

// A tensor assembled from its streamed chunks.
struct Assembled {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
};

// Writes tensors as one .safetensors file (any number) or one .npy file (exactly one tensor).
// Returns an empty string on success, else the reason.
std::string WriteTensors(const std::string& path, const std::map<std::string, Assembled>& tensors);

}  // namespace lensctl

#endif  // LENSD_CLIENTS_CLI_OUTPUT_H_
