// Added and special tokens of tokenizer.json ("added_tokens"), matched in the input before the
// model runs: leftmost-longest, first on the raw text (tokens with normalized=false), then on the
// normalized remainder, honouring single_word, lstrip and rstrip as Hugging Face tokenizers does.
// Immutable after Create; thread-safe.
#ifndef LENSD_CORE_TOKENIZER_ADDED_VOCABULARY_H_
#define LENSD_CORE_TOKENIZER_ADDED_VOCABULARY_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tokenizer/components.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::tokenizer {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocabulary {
 public:
  // Reads the "added_tokens" array; `normalizer` (may be null) normalizes the patterns of tokens
  // with normalized=true.
  static absl::StatusOr<AddedVocabulary> FromJson(const nlohmann::json& added_tokens,
                                                  const Normalizer* normalizer);

  // Cuts `text` into added tokens and normalized pieces left for the pre-tokenizer and model.
  PreTokenized ExtractAndNormalize(absl::string_view text, const Normalizer* normalizer) const;

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(absl::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // Leftmost-longest matching of literal patterns.
  struct Matcher {
    std::vector<std::string> patterns;
    std::vector<size_t> token_index;                     // index into tokens_ for each pattern
    std::array<std::vector<size_t>, 256> by_first_byte;  // pattern indices, longest first

    void Add(std::string pattern, size_t token);
    // The leftmost-longest match at or after `from`: (start, pattern index), or start = npos.
    std::pair<size_t, size_t> Find(absl::string_view text, size_t from) const;
  };

  std::vector<NormalizedString> SplitWithMatcher(const NormalizedString& text,
                                                 const Matcher& matcher,
                                                 std::vector<std::optional<int32_t>>* ids) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  Matcher raw_;         // tokens with normalized=false, matched on the original text
  Matcher normalized_;  // tokens with normalized=true, matched after normalization
};

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_ADDED_VOCABULARY_H_
