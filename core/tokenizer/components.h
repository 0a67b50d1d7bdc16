// The pipeline stages of a tokenizer.json: normalizer, pre-tokenizer, post-processor and decoder,
// each built from its JSON object with the Hugging Face tokenizers semantics.
// All stages are immutable after creation and thread-safe.
#ifndef LENSD_CORE_TOKENIZER_COMPONENTS_H_
#define LENSD_CORE_TOKENIZER_COMPONENTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tokenizer/bpe.h"
#include "core/tokenizer/normalized_string.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::tokenizer {

// The input cut into pieces; a piece with tokens is final (an added token), the others are
// still being split and normalized.
struct Piece {
  NormalizedString normalized;
  std::optional<std::vector<Token>> tokens;
};
using PreTokenized = std::vector<Piece>;

// Output of encoding, before and after post-processing. Offsets are byte offsets into the
// original text until the tokenizer converts them to characters.
struct EncodingParts {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
  std::vector<Offsets> offsets;
  std::vector<uint8_t> special_tokens_mask;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(NormalizedString* text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void PreTokenize(PreTokenized* pieces) const = 0;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(EncodingParts* encoding, bool add_special_tokens) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const = 0;
};

// Each returns INVALID_ARGUMENT naming `where` (e.g. "normalizer.normalizers[0]") and the
// supported types for an unknown or malformed stage.
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& json,
                                                               absl::string_view where);
absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& json,
                                                                   absl::string_view where);
absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessorFromJson(const nlohmann::json& json,
                                                                     absl::string_view where);
absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& json,
                                                         absl::string_view where);

// Splits every piece without tokens by `split`, dropping empty results (tokenizers'
// PreTokenizedString::split).
template <typename SplitFn>
void SplitPieces(PreTokenized* pieces, const SplitFn& split) {
  PreTokenized out;
  out.reserve(pieces->size());
  for (Piece& piece : *pieces) {
    if (piece.tokens) {
      out.push_back(std::move(piece));
      continue;
    }
    for (NormalizedString& part : split(std::move(piece.normalized))) {
      if (!part.empty()) out.push_back({std::move(part), std::nullopt});
    }
  }
  *pieces = std::move(out);
}

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_COMPONENTS_H_
