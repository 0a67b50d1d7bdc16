// A string being normalized, with the alignment of every normalized byte to the original text,
// following the Hugging Face tokenizers NormalizedString semantics exactly (offsets depend on it).
// A value type; not thread-safe to mutate concurrently.
#ifndef LENSD_CORE_TOKENIZER_NORMALIZED_STRING_H_
#define LENSD_CORE_TOKENIZER_NORMALIZED_STRING_H_

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace lensd::tokenizer {

using Offsets = std::pair<size_t, size_t>;  // [start, end) byte offsets

// One segment of a string searched by a pattern: matched or the gap between matches. Segments
// cover the whole string in order.
struct MatchSegment {
  Offsets offsets;
  bool is_match;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class NormalizedString {
 public:
  // One character of a transformation: `change` is 1 for an inserted character, 0 for one that
  // replaces the current character, -N for one that replaces it and removes the N that follow.
  struct Change {
    char32_t c;
    int change;
  };

  NormalizedString() = default;
  explicit NormalizedString(std::string original);

  const std::string& get() const { return normalized_; }
  const std::string& original() const { return original_; }
  bool empty() const { return normalized_.empty(); }
  // Offsets of this (sub)string within the text the user gave.
  Offsets OffsetsOriginal() const { return {original_shift_, original_shift_ + original_.size()}; }
  // Original byte range (relative to this string's original) covering normalized bytes
  // [start, end). An empty range maps to itself, as in tokenizers.
  std::optional<Offsets> NormalizedToOriginal(size_t start, size_t end) const;

  void TransformRange(size_t start, size_t end, const std::vector<Change>& dest,
                      size_t initial_offset);
  void Transform(const std::vector<Change>& dest, size_t initial_offset) {
    TransformRange(0, normalized_.size(), dest, initial_offset);
  }
  void Prepend(absl::string_view text);
  // Replaces every matched segment by `content`.
  void Replace(const std::vector<MatchSegment>& segments, absl::string_view content);
  void Lowercase();
  void Strip(bool left, bool right);
  // Unicode normalization forms "NFC", "NFD", "NFKC", "NFKD".
  void UnicodeNormalize(absl::string_view form);

  // The sub-string for normalized bytes [start, end); nullopt off character boundaries.
  std::optional<NormalizedString> Slice(size_t start, size_t end) const;
  // Splits by the pattern's segments with the given delimiter behavior.
  std::vector<NormalizedString> Split(const std::vector<MatchSegment>& segments,
                                      SplitBehavior behavior) const;

 private:
  std::string original_;
  std::string normalized_;
  std::vector<Offsets> alignments_;  // one per normalized byte
  size_t original_shift_ = 0;
};

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_NORMALIZED_STRING_H_
