// Search patterns of tokenizer.json ({"String": ...} or {"Regex": ...}), evaluated with the
// semantics of the Hugging Face tokenizers library: regexes are Oniguruma-flavoured and run
// here on ICU with `\s`/`\S` mapped to Unicode White_Space as Oniguruma defines them.
// Immutable after creation; FindMatches is thread-safe.
#ifndef LENSD_CORE_TOKENIZER_PATTERN_H_
#define LENSD_CORE_TOKENIZER_PATTERN_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tokenizer/normalized_string.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::tokenizer {

class Pattern {
 public:
  // A literal string pattern; an empty literal matches nothing.
  static Pattern Literal(std::string text);
  // An Oniguruma-style regular expression; INVALID_ARGUMENT if it does not compile.
  static absl::StatusOr<Pattern> Regex(absl::string_view expression);

  // Segments covering `text` in order: matches and the gaps between them. An empty text gives
  // one empty unmatched segment.
  std::vector<MatchSegment> FindMatches(absl::string_view text) const;

 private:
  struct CompiledRegex;  // ICU regex, defined in pattern.cc

  std::string literal_;
  std::shared_ptr<const CompiledRegex> regex_;
};

// Reads `stage`["pattern"], which is {"String": "..."} or {"Regex": "..."}; INVALID_ARGUMENT
// names "<where>.pattern".
absl::StatusOr<Pattern> PatternField(const nlohmann::json& stage, absl::string_view where);

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_PATTERN_H_
