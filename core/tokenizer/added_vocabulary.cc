#include "core/tokenizer/added_vocabulary.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "core/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

// Rust regex \w: Alphabetic, marks, decimal digits, connector punctuation, joiners.
bool IsWordChar(char32_t c) {
  const auto cp = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(cp, UCHAR_ALPHABETIC)) return true;
  const int8_t type = u_charType(cp);
  return type == U_NON_SPACING_MARK || type == U_ENCLOSING_MARK ||
         type == U_COMBINING_SPACING_MARK || type == U_DECIMAL_DIGIT_NUMBER ||
         type == U_CONNECTOR_PUNCTUATION || c == 0x200C || c == 0x200D;
}

bool EndsWithWord(absl::string_view text) {
  if (text.empty()) return false;
  return IsWordChar(DecodeUtf8(text).back().value);
}

bool StartsWithWord(absl::string_view text) {
  if (text.empty()) return false;
  return IsWordChar(DecodeUtf8(text.substr(0, std::min<size_t>(4, text.size()))).front().value);
}

// Byte position where the trailing whitespace of `text` begins.
size_t TrailingSpaceStart(absl::string_view text) {
  const std::vector<CodePoint> chars = DecodeUtf8(text);
  size_t start = text.size();
  for (auto it = chars.rbegin(); it != chars.rend() && IsWhitespace(it->value); ++it) {
    start = it->byte_offset;
  }
  return start;
}

// Length in bytes of the leading whitespace of `text`.
size_t LeadingSpaceLength(absl::string_view text) {
  size_t length = 0;
  for (const CodePoint& cp : DecodeUtf8(text)) {
    if (!IsWhitespace(cp.value)) break;
    length = cp.byte_offset + cp.byte_length;
  }
  return length;
}

}  // namespace

void AddedVocabulary::Matcher::Add(std::string pattern, size_t token) {
  if (pattern.empty()) return;
  const size_t index = patterns.size();
  auto& bucket = by_first_byte[static_cast<unsigned char>(pattern[0])];
  patterns.push_back(std::move(pattern));
  token_index.push_back(token);
  bucket.push_back(index);
  std::stable_sort(bucket.begin(), bucket.end(),
                   [this](size_t a, size_t b) { return patterns[a].size() > patterns[b].size(); });
}

std::pair<size_t, size_t> AddedVocabulary::Matcher::Find(absl::string_view text,
                                                         size_t from) const {
  if (patterns.empty()) return {absl::string_view::npos, 0};
  for (size_t i = from; i < text.size(); ++i) {
    for (const size_t p : by_first_byte[static_cast<unsigned char>(text[i])]) {
      if (text.compare(i, patterns[p].size(), patterns[p]) == 0) return {i, p};
    }
  }
  return {absl::string_view::npos, 0};
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::FromJson(const nlohmann::json& added_tokens,
                                                          const Normalizer* normalizer) {
  AddedVocabulary vocab;
  if (added_tokens.is_null()) return vocab;
  if (!added_tokens.is_array()) {
    return absl::InvalidArgumentError("added_tokens must be an array");
  }
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    const nlohmann::json& item = added_tokens[i];
    const std::string where = absl::StrCat("added_tokens[", i, "]");
    AddedToken token;
    LENSD_ASSIGN_OR_RETURN(const int64_t id, json_fields::Int(item, "id", where));
    token.id = static_cast<int32_t>(id);
    LENSD_ASSIGN_OR_RETURN(token.content, json_fields::String(item, "content", where));
    LENSD_ASSIGN_OR_RETURN(token.single_word, json_fields::Bool(item, "single_word", false, where));
    LENSD_ASSIGN_OR_RETURN(token.lstrip, json_fields::Bool(item, "lstrip", false, where));
    LENSD_ASSIGN_OR_RETURN(token.rstrip, json_fields::Bool(item, "rstrip", false, where));
    LENSD_ASSIGN_OR_RETURN(token.special, json_fields::Bool(item, "special", false, where));
    LENSD_ASSIGN_OR_RETURN(token.normalized,
                           json_fields::Bool(item, "normalized", !token.special, where));
    if (token.content.empty() || !IsValidUtf8(token.content)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".content must be non-empty UTF-8"));
    }
    const size_t index = vocab.tokens_.size();
    vocab.by_id_[token.id] = index;
    vocab.by_content_[token.content] = index;
    vocab.tokens_.push_back(token);
  }
  for (size_t i = 0; i < vocab.tokens_.size(); ++i) {
    const AddedToken& token = vocab.tokens_[i];
    if (!token.normalized) {
      vocab.raw_.Add(token.content, i);
      continue;
    }
    NormalizedString pattern(token.content);
    if (normalizer != nullptr) normalizer->Normalize(&pattern);
    vocab.normalized_.Add(pattern.get(), i);
  }
  return vocab;
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(absl::string_view content) const {
  const auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

std::vector<NormalizedString> AddedVocabulary::SplitWithMatcher(
    const NormalizedString& text, const Matcher& matcher,
    std::vector<std::optional<int32_t>>* ids) const {
  const std::string& s = text.get();
  std::vector<std::pair<std::optional<int32_t>, Offsets>> splits;
  size_t start_offset = 0;
  for (auto [start, pattern] = matcher.Find(s, 0); start != absl::string_view::npos;) {
    size_t stop = start + matcher.patterns[pattern].size();
    const size_t resume = stop;
    const AddedToken& token = tokens_[matcher.token_index[pattern]];
    bool keep = true;
    if (token.single_word) {
      const bool start_space = start == 0 || !EndsWithWord(absl::string_view(s).substr(0, start));
      const bool stop_space =
          stop == s.size() || !StartsWithWord(absl::string_view(s).substr(stop));
      keep = start_space && stop_space;
    }
    if (keep) {
      if (token.lstrip) {
        start = std::max(TrailingSpaceStart(absl::string_view(s).substr(0, start)), start_offset);
      }
      if (token.rstrip) stop += LeadingSpaceLength(absl::string_view(s).substr(stop));
      if (start_offset < start) splits.push_back({std::nullopt, {start_offset, start}});
      splits.push_back({token.id, {start, stop}});
      start_offset = stop;
    }
    std::tie(start, pattern) = matcher.Find(s, std::max(resume, start_offset));
  }
  if (s.empty()) splits.push_back({std::nullopt, {0, 0}});
  if (start_offset != s.size()) splits.push_back({std::nullopt, {start_offset, s.size()}});

  std::vector<NormalizedString> out;
  for (const auto& [id, offsets] : splits) {
    std::optional<NormalizedString> slice = text.Slice(offsets.first, offsets.second);
    if (!slice) continue;
    out.push_back(std::move(*slice));
    ids->push_back(id);
  }
  return out;
}

PreTokenized AddedVocabulary::ExtractAndNormalize(absl::string_view text,
                                                  const Normalizer* normalizer) const {
  PreTokenized pieces;
  pieces.push_back({NormalizedString(std::string(text)), std::nullopt});
  for (int pass = 0; pass < 2; ++pass) {
    const Matcher& matcher = pass == 0 ? raw_ : normalized_;
    PreTokenized out;
    for (Piece& piece : pieces) {
      if (piece.tokens) {
        out.push_back(std::move(piece));
        continue;
      }
      if (pass == 1 && normalizer != nullptr) normalizer->Normalize(&piece.normalized);
      std::vector<std::optional<int32_t>> ids;
      std::vector<NormalizedString> parts = SplitWithMatcher(piece.normalized, matcher, &ids);
      for (size_t i = 0; i < parts.size(); ++i) {
        if (parts[i].empty()) continue;
        std::optional<std::vector<Token>> tokens;
        if (const auto& id = ids[i]; id.has_value()) {
          tokens = std::vector<Token>{{*id, parts[i].get(), {0, parts[i].get().size()}}};
        }
        out.push_back({std::move(parts[i]), std::move(tokens)});
      }
    }
    pieces = std::move(out);
  }
  return pieces;
}

}  // namespace lensd::tokenizer
