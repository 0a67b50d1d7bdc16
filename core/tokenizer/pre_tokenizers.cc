// Pre-tokenizers of tokenizer.json: Sequence, ByteLevel, Split, Metaspace, Digits, Whitespace,
// WhitespaceSplit, Punctuation.
#include <unicode/uchar.h>

#include <cctype>
#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/components.h"
#include "core/tokenizer/pattern.h"
#include "core/tokenizer/stage_list.h"
#include "core/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

using SplitFn = std::function<std::vector<NormalizedString>(NormalizedString)>;

// Splits each piece without tokens by a function of the piece.
class SplittingPreTokenizer : public PreTokenizer {
 public:
  explicit SplittingPreTokenizer(SplitFn fn) : fn_(std::move(fn)) {}
  void PreTokenize(PreTokenized* pieces) const override { SplitPieces(pieces, fn_); }

 private:
  SplitFn fn_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> stages)
      : stages_(std::move(stages)) {}
  void PreTokenize(PreTokenized* pieces) const override {
    for (const auto& stage : stages_) stage->PreTokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> stages_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void PreTokenize(PreTokenized* pieces) const override {
    SplitPieces(pieces, [this](NormalizedString s) {
      if (add_prefix_space_ && (s.get().empty() || s.get()[0] != ' ')) s.Prepend(" ");
      if (!use_regex_) return std::vector<NormalizedString>{std::move(s)};
      return s.Split(Gpt2SplitPattern().FindMatches(s.get()), SplitBehavior::kIsolated);
    });
    for (Piece& piece : *pieces) {
      if (piece.tokens) continue;
      std::vector<NormalizedString::Change> changes;
      const std::string& text = piece.normalized.get();
      changes.reserve(text.size());
      for (const CodePoint& cp : DecodeUtf8(text)) {
        for (size_t i = 0; i < cp.byte_length; ++i) {
          changes.push_back(
              {ByteToChar(static_cast<uint8_t>(text[cp.byte_offset + i])), i > 0 ? 1 : 0});
        }
      }
      piece.normalized.Transform(changes, 0);
    }
  }

 private:
  bool add_prefix_space_;
  bool use_regex_;
};

// tokenizers' Pattern for Fn(char) -> bool: every matching character is its own match.
std::vector<MatchSegment> CharMatches(absl::string_view text,
                                      const std::function<bool(char32_t)>& matches) {
  if (text.empty()) return {{{0, 0}, false}};
  std::vector<MatchSegment> out;
  size_t last = 0;
  for (const CodePoint& cp : DecodeUtf8(text)) {
    if (!matches(cp.value)) continue;
    if (last < cp.byte_offset) out.push_back({{last, cp.byte_offset}, false});
    out.push_back({{cp.byte_offset, cp.byte_offset + cp.byte_length}, true});
    last = cp.byte_offset + cp.byte_length;
  }
  if (last < text.size()) out.push_back({{last, text.size()}, false});
  return out;
}

std::vector<MatchSegment> Inverted(std::vector<MatchSegment> segments) {
  for (MatchSegment& s : segments) s.is_match = !s.is_match;
  return segments;
}

absl::StatusOr<SplitBehavior> ParseBehavior(const nlohmann::json& json, absl::string_view where,
                                            SplitBehavior fallback) {
  LENSD_ASSIGN_OR_RETURN(const auto name, json_fields::OptionalString(json, "behavior", where));
  if (!name) return fallback;
  if (*name == "Removed") return SplitBehavior::kRemoved;
  if (*name == "Isolated") return SplitBehavior::kIsolated;
  if (*name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (*name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (*name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat(
      where, ".behavior \"", *name,
      "\" is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> Metaspace(const nlohmann::json& json,
                                                        absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(const std::string replacement,
                         json_fields::String(json, "replacement", where));
  if (CountCodePoints(replacement) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".replacement must be one character"));
  }
  LENSD_ASSIGN_OR_RETURN(auto scheme, json_fields::OptionalString(json, "prepend_scheme", where));
  if (!scheme) {  // legacy files: add_prefix_space true means "always"
    LENSD_ASSIGN_OR_RETURN(const bool add,
                           json_fields::Bool(json, "add_prefix_space", true, where));
    scheme = add ? "always" : "never";
  }
  if (*scheme != "always" && *scheme != "first" && *scheme != "never") {
    return absl::InvalidArgumentError(absl::StrCat(where, ".prepend_scheme \"", *scheme,
                                                   "\" is not one of always, first, never"));
  }
  LENSD_ASSIGN_OR_RETURN(const bool split, json_fields::Bool(json, "split", true, where));
  const Pattern space = Pattern::Literal(" ");
  const Pattern marker = Pattern::Literal(replacement);
  return std::unique_ptr<PreTokenizer>(
      std::make_unique<SplittingPreTokenizer>([=, scheme = *scheme](NormalizedString s) {
        s.Replace(space.FindMatches(s.get()), replacement);
        const bool starts = s.get().compare(0, replacement.size(), replacement) == 0;
        if (!starts &&
            (scheme == "always" || (scheme == "first" && s.OffsetsOriginal().first == 0))) {
          s.Prepend(replacement);
        }
        if (!split) return std::vector<NormalizedString>{std::move(s)};
        return s.Split(marker.FindMatches(s.get()), SplitBehavior::kMergedWithNext);
      }));
}

std::unique_ptr<PreTokenizer> Splitting(SplitFn fn) {
  return std::make_unique<SplittingPreTokenizer>(std::move(fn));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& json,
                                                                   absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(const std::string type, json_fields::String(json, "type", where));
  if (type == "Sequence") {
    LENSD_ASSIGN_OR_RETURN(auto stages, ParseStageList<PreTokenizer>(json, "pretokenizers", where,
                                                                     PreTokenizerFromJson));
    return std::unique_ptr<PreTokenizer>(std::make_unique<SequencePreTokenizer>(std::move(stages)));
  }
  if (type == "ByteLevel") {
    LENSD_ASSIGN_OR_RETURN(const bool prefix,
                           json_fields::Bool(json, "add_prefix_space", true, where));
    LENSD_ASSIGN_OR_RETURN(const bool regex, json_fields::Bool(json, "use_regex", true, where));
    return std::unique_ptr<PreTokenizer>(std::make_unique<ByteLevelPreTokenizer>(prefix, regex));
  }
  if (type == "Split") {
    LENSD_ASSIGN_OR_RETURN(Pattern compiled, PatternField(json, where));
    LENSD_ASSIGN_OR_RETURN(const SplitBehavior behavior,
                           ParseBehavior(json, where, SplitBehavior::kIsolated));
    LENSD_ASSIGN_OR_RETURN(const bool invert, json_fields::Bool(json, "invert", false, where));
    return Splitting([p = std::move(compiled), behavior, invert](const NormalizedString& s) {
      std::vector<MatchSegment> segments = p.FindMatches(s.get());
      if (invert) segments = Inverted(std::move(segments));
      return s.Split(segments, behavior);
    });
  }
  if (type == "Metaspace") return Metaspace(json, where);
  if (type == "Digits") {
    LENSD_ASSIGN_OR_RETURN(const bool individual,
                           json_fields::Bool(json, "individual_digits", false, where));
    return Splitting([individual](const NormalizedString& s) {
      return s.Split(CharMatches(s.get(),
                                 [](char32_t c) {
                                   return u_isdigit(static_cast<UChar32>(c)) ||
                                          u_charType(static_cast<UChar32>(c)) == U_LETTER_NUMBER ||
                                          u_charType(static_cast<UChar32>(c)) == U_OTHER_NUMBER;
                                 }),
                     individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
    });
  }
  if (type == "WhitespaceSplit") {
    return Splitting([](const NormalizedString& s) {
      return s.Split(CharMatches(s.get(), IsWhitespace), SplitBehavior::kRemoved);
    });
  }
  if (type == "Whitespace") {
    static const Pattern* words = new Pattern(*Pattern::Regex(R"(\w+|[^\w\s]+)"));
    return Splitting([](const NormalizedString& s) {
      return s.Split(Inverted(words->FindMatches(s.get())), SplitBehavior::kRemoved);
    });
  }
  if (type == "Punctuation") {
    LENSD_ASSIGN_OR_RETURN(const SplitBehavior behavior,
                           ParseBehavior(json, where, SplitBehavior::kIsolated));
    return Splitting([behavior](const NormalizedString& s) {
      return s.Split(CharMatches(s.get(),
                                 [](char32_t c) {
                                   // Rust: is_ascii_punctuation() || is_punctuation()
                                   return (c < 128 && std::ispunct(static_cast<int>(c)) != 0) ||
                                          u_ispunct(static_cast<UChar32>(c)) != 0;
                                 }),
                     behavior);
    });
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where, ".type \"", type,
      "\" is not supported; lensd reads Sequence, ByteLevel, Split, Metaspace, Digits, "
      "Whitespace, WhitespaceSplit and Punctuation pre-tokenizers"));
}

}  // namespace lensd::tokenizer
