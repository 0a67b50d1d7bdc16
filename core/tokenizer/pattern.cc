#include "core/tokenizer/pattern.h"

#include <unicode/regex.h>
#include <unicode/utext.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {

struct Pattern::CompiledRegex {
  std::unique_ptr<icu::RegexPattern> pattern;
};

namespace {

// Oniguruma's \s is Unicode White_Space; ICU's is [\t\n\f\r\p{Z}] (no \v, no U+0085).
std::string TranslateToIcu(absl::string_view expression) {
  std::string out;
  out.reserve(expression.size() + 32);
  for (size_t i = 0; i < expression.size(); ++i) {
    if (expression[i] == '\\' && i + 1 < expression.size()) {
      const char next = expression[i + 1];
      if (next == 's') {
        out += "\\p{White_Space}";
      } else if (next == 'S') {
        out += "\\P{White_Space}";
      } else {
        out.append(expression.data() + i, 2);
      }
      ++i;
      continue;
    }
    out.push_back(expression[i]);
  }
  return out;
}

}  // namespace

Pattern Pattern::Literal(std::string text) {
  Pattern p;
  p.literal_ = std::move(text);
  return p;
}

absl::StatusOr<Pattern> Pattern::Regex(absl::string_view expression) {
  const std::string translated = TranslateToIcu(expression);
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  auto compiled = std::make_shared<CompiledRegex>();
  compiled->pattern.reset(
      icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(icu::StringPiece(
                                     translated.data(), static_cast<int32_t>(translated.size()))),
                                 0, parse_error, status));
  if (U_FAILURE(status) || !compiled->pattern) {
    return absl::InvalidArgumentError(absl::StrCat("regex \"", expression,
                                                   "\" does not compile: ", u_errorName(status),
                                                   " at offset ", parse_error.offset));
  }
  Pattern p;
  p.regex_ = std::move(compiled);
  return p;
}

absl::StatusOr<Pattern> PatternField(const nlohmann::json& stage, absl::string_view where) {
  const auto pattern = stage.find("pattern");
  if (pattern == stage.end() || !pattern->is_object() || pattern->size() != 1 ||
      !pattern->begin().value().is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".pattern must be {\"String\": ...} or {\"Regex\": ...}"));
  }
  const std::string& kind = pattern->begin().key();
  const std::string value = pattern->begin().value().get<std::string>();
  if (kind == "String") return Pattern::Literal(value);
  if (kind != "Regex") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".pattern kind \"", kind, "\" is not one of String, Regex"));
  }
  absl::StatusOr<Pattern> regex = Pattern::Regex(value);
  if (!regex.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".pattern: ", regex.status().message()));
  }
  return regex;
}

std::vector<MatchSegment> Pattern::FindMatches(absl::string_view text) const {
  if (text.empty()) return {{{0, 0}, false}};
  std::vector<Offsets> matches;
  if (regex_) {
    UErrorCode status = U_ZERO_ERROR;
    UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
    std::unique_ptr<icu::RegexMatcher> matcher(regex_->pattern->matcher(status));
    if (U_SUCCESS(status) && matcher) {
      matcher->reset(utext);
      while (matcher->find(status) && U_SUCCESS(status)) {
        matches.emplace_back(static_cast<size_t>(matcher->start64(status)),
                             static_cast<size_t>(matcher->end64(status)));
      }
    }
    matcher.reset();
    utext_close(utext);
  } else if (!literal_.empty()) {
    for (size_t pos = text.find(literal_); pos != absl::string_view::npos;
         pos = text.find(literal_, pos + literal_.size())) {
      matches.emplace_back(pos, pos + literal_.size());
    }
  }
  std::vector<MatchSegment> segments;
  size_t previous = 0;
  for (const Offsets& m : matches) {
    if (previous != m.first) segments.push_back({{previous, m.first}, false});
    segments.push_back({m, true});
    previous = m.second;
  }
  if (previous != text.size()) segments.push_back({{previous, text.size()}, false});
  return segments;
}

}  // namespace lensd::tokenizer
