// A Hugging Face tokenizer.json, read as it is and applied with the semantics of the `tokenizers`
// library: added and special tokens, normalizer, pre-tokenizer, BPE model (byte-level, or
// SentencePiece-style with byte fallback), post-processor (BOS/EOS templates) and decoder.
// Truncation and padding settings in the file are ignored: callers bound lengths themselves.
//
// Immutable after creation; Encode and Decode are thread-safe.
#ifndef LENSD_CORE_TOKENIZER_TOKENIZER_H_
#define LENSD_CORE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lensd::tokenizer {

class AddedVocabulary;
class BpeModel;
class Normalizer;
class PreTokenizer;
class PostProcessor;
class Decoder;

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;                 // vocabulary strings, e.g. "Ġthe"
  std::vector<std::pair<size_t, size_t>> offsets;  // [start, end) in code points of the input
  std::vector<uint8_t> special_tokens_mask;        // 1 for tokens the post-processor added
};

class Tokenizer {
 public:
  // Reads a tokenizer.json file. INVALID_ARGUMENT names the file and the field that is wrong;
  // NOT_FOUND when the file does not exist.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  // Parses tokenizer.json text; `source` names it in error messages.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(absl::string_view json,
                                                             absl::string_view source);
  ~Tokenizer();

  // Encodes UTF-8 text; INVALID_ARGUMENT for malformed UTF-8. `add_special_tokens` applies the
  // post-processor's template (e.g. Llama's BOS), as tokenizers' encode() does by default.
  absl::StatusOr<Encoding> Encode(absl::string_view text, bool add_special_tokens = true) const;

  // Decodes ids to text; ids outside the vocabulary are skipped, as tokenizers does.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens = true) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  // One past the largest id of the model and added vocabularies.
  int32_t vocab_size() const { return vocab_size_; }

 private:
  Tokenizer();

  std::unique_ptr<AddedVocabulary> added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  int32_t vocab_size_ = 0;
};

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_TOKENIZER_H_
