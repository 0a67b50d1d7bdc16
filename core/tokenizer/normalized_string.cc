#include "core/tokenizer/normalized_string.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>

#include "core/tokenizer/unicode.h"

namespace lensd::tokenizer {

NormalizedString::NormalizedString(std::string original)
    : original_(std::move(original)), normalized_(original_) {
  alignments_.reserve(original_.size());
  for (const CodePoint& cp : DecodeUtf8(original_)) {
    for (size_t i = 0; i < cp.byte_length; ++i) {
      alignments_.emplace_back(cp.byte_offset, cp.byte_offset + cp.byte_length);
    }
  }
}

std::optional<Offsets> NormalizedString::NormalizedToOriginal(size_t start, size_t end) const {
  if (start == end) return Offsets{start, end};
  if (start > end || end > alignments_.size()) return std::nullopt;
  return Offsets{alignments_[start].first, alignments_[end - 1].second};
}

void NormalizedString::TransformRange(size_t start, size_t end, const std::vector<Change>& dest,
                                      size_t initial_offset) {
  const std::vector<CodePoint> replaced =
      DecodeUtf8(absl::string_view(normalized_).substr(start, end - start));
  size_t next = 0;  // next replaced character to consume
  size_t offset = start;
  for (; next < initial_offset && next < replaced.size(); ++next) {
    offset += replaced[next].byte_length;
  }
  std::string text;
  std::vector<Offsets> alignments;
  alignments.reserve(end - start);
  for (const Change& change : dest) {
    Offsets align{0, 0};
    if (change.change > 0) {
      if (offset >= 1) align = alignments_[offset - 1];
    } else if (offset < alignments_.size()) {
      align = alignments_[offset];
    }
    if (change.change <= 0 && next < replaced.size()) offset += replaced[next++].byte_length;
    for (int removed = 0; removed < -change.change && next < replaced.size(); ++removed) {
      offset += replaced[next++].byte_length;
    }
    const size_t before = text.size();
    AppendUtf8(change.c, &text);
    alignments.insert(alignments.end(), text.size() - before, align);
  }
  alignments_.erase(alignments_.begin() + static_cast<std::ptrdiff_t>(start),
                    alignments_.begin() + static_cast<std::ptrdiff_t>(end));
  alignments_.insert(alignments_.begin() + static_cast<std::ptrdiff_t>(start), alignments.begin(),
                     alignments.end());
  normalized_.replace(start, end - start, text);
}

void NormalizedString::Prepend(absl::string_view text) {
  if (normalized_.empty()) return;
  const CodePoint first = DecodeUtf8(absl::string_view(normalized_).substr(0, 4)).front();
  std::vector<Change> changes;
  bool is_first = true;
  for (const CodePoint& cp : DecodeUtf8(text)) {
    changes.push_back({cp.value, is_first ? 0 : 1});
    is_first = false;
  }
  changes.push_back({first.value, 1});
  TransformRange(0, first.byte_length, changes, 0);
}

void NormalizedString::Replace(const std::vector<MatchSegment>& segments,
                               absl::string_view content) {
  std::vector<Change> changes;
  for (const CodePoint& cp : DecodeUtf8(content)) changes.push_back({cp.value, 1});
  std::ptrdiff_t shift = 0;
  for (const MatchSegment& segment : segments) {
    if (!segment.is_match) continue;
    const size_t start =
        static_cast<size_t>(static_cast<std::ptrdiff_t>(segment.offsets.first) + shift);
    const size_t end =
        static_cast<size_t>(static_cast<std::ptrdiff_t>(segment.offsets.second) + shift);
    const size_t removed_chars =
        CountCodePoints(absl::string_view(normalized_).substr(start, end - start));
    TransformRange(start, end, changes, removed_chars);
    shift += static_cast<std::ptrdiff_t>(content.size()) -
             static_cast<std::ptrdiff_t>(segment.offsets.second - segment.offsets.first);
  }
}

void NormalizedString::Lowercase() {
  std::vector<Change> changes;
  for (const CodePoint& cp : DecodeUtf8(normalized_)) {
    bool is_first = true;
    for (const char32_t c : ToLowercase(cp.value)) {
      changes.push_back({c, is_first ? 0 : 1});
      is_first = false;
    }
  }
  Transform(changes, 0);
}

void NormalizedString::Strip(bool left, bool right) {
  const std::vector<CodePoint> chars = DecodeUtf8(normalized_);
  size_t leading = 0;
  size_t trailing = 0;
  while (left && leading < chars.size() && IsWhitespace(chars[leading].value)) ++leading;
  while (right && trailing < chars.size() &&
         IsWhitespace(chars[chars.size() - 1 - trailing].value)) {
    ++trailing;
  }
  if (leading == 0 && trailing == 0) return;
  std::vector<Change> changes;
  for (size_t i = 0; i < chars.size(); ++i) {
    if (i < leading || i + trailing >= chars.size()) continue;
    const bool last_kept = i + trailing + 1 == chars.size();
    changes.push_back({chars[i].value, last_kept ? -static_cast<int>(trailing) : 0});
  }
  Transform(changes, leading);
}

void NormalizedString::UnicodeNormalize(absl::string_view form) {
  UErrorCode status = U_ZERO_ERROR;
  const bool compatibility = form == "NFKC" || form == "NFKD";
  const bool compose = form == "NFC" || form == "NFKC";
  const icu::Normalizer2* decomposer = compatibility ? icu::Normalizer2::getNFKDInstance(status)
                                                     : icu::Normalizer2::getNFDInstance(status);
  const icu::Normalizer2* composer = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return;

  // Each output character records how many input characters it consumes (0 for one inserted by
  // a decomposition), which gives the alignment changes tokenizers' NFC/NFD produce.
  struct Out {
    UChar32 c;
    int consumed;
  };
  std::vector<Out> chars;
  for (const CodePoint& cp : DecodeUtf8(normalized_)) {
    icu::UnicodeString mapping;
    if (!decomposer->getDecomposition(static_cast<UChar32>(cp.value), mapping)) {
      chars.push_back({static_cast<UChar32>(cp.value), 1});
      continue;
    }
    for (int32_t i = 0; i < mapping.length(); i += U16_LENGTH(mapping.char32At(i))) {
      chars.push_back({mapping.char32At(i), i == 0 ? 1 : 0});
    }
  }
  // Canonical ordering: runs of non-starters sorted stably by combining class.
  for (size_t i = 0; i < chars.size();) {
    size_t j = i;
    while (j < chars.size() && u_getCombiningClass(chars[j].c) != 0) ++j;
    std::stable_sort(chars.begin() + static_cast<std::ptrdiff_t>(i),
                     chars.begin() + static_cast<std::ptrdiff_t>(j),
                     [](const Out& a, const Out& b) {
                       return u_getCombiningClass(a.c) < u_getCombiningClass(b.c);
                     });
    i = j == i ? i + 1 : j;
  }
  if (compose) {
    std::vector<Out> composed;
    std::ptrdiff_t starter = -1;
    for (const Out& c : chars) {
      const uint8_t ccc = u_getCombiningClass(c.c);
      if (starter >= 0) {
        const bool adjacent = static_cast<std::ptrdiff_t>(composed.size()) - 1 == starter;
        const uint8_t last = u_getCombiningClass(composed.back().c);
        const bool blocked = !adjacent && (last == 0 || last >= ccc);
        const UChar32 pair =
            blocked ? -1 : composer->composePair(composed[static_cast<size_t>(starter)].c, c.c);
        if (pair >= 0) {
          composed[static_cast<size_t>(starter)].c = pair;
          composed[static_cast<size_t>(starter)].consumed += c.consumed;
          continue;
        }
      }
      if (ccc == 0) starter = static_cast<std::ptrdiff_t>(composed.size());
      composed.push_back(c);
    }
    chars = std::move(composed);
  }
  std::vector<Change> changes;
  changes.reserve(chars.size());
  for (const Out& c : chars) {
    changes.push_back({static_cast<char32_t>(c.c), c.consumed == 0 ? 1 : 1 - c.consumed});
  }
  Transform(changes, 0);
}

std::optional<NormalizedString> NormalizedString::Slice(size_t start, size_t end) const {
  const auto is_boundary = [&](size_t i) {
    return i == normalized_.size() ||
           (i < normalized_.size() && (static_cast<unsigned char>(normalized_[i]) & 0xC0) != 0x80);
  };
  if (start > end || !is_boundary(start) || !is_boundary(end)) return std::nullopt;
  const std::optional<Offsets> original = NormalizedToOriginal(start, end);
  if (!original || original->second > original_.size()) return std::nullopt;
  NormalizedString out;
  out.original_ = original_.substr(original->first, original->second - original->first);
  out.normalized_ = normalized_.substr(start, end - start);
  out.alignments_.reserve(end - start);
  for (size_t i = start; i < end; ++i) {
    out.alignments_.emplace_back(alignments_[i].first - original->first,
                                 alignments_[i].second - original->first);
  }
  out.original_shift_ = original_shift_ + original->first;
  return out;
}

std::vector<NormalizedString> NormalizedString::Split(const std::vector<MatchSegment>& segments,
                                                      SplitBehavior behavior) const {
  std::vector<std::pair<Offsets, bool>> splits;  // (offsets, remove)
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const MatchSegment& s : segments) splits.push_back({s.offsets, false});
      break;
    case SplitBehavior::kRemoved:
      for (const MatchSegment& s : segments) splits.push_back({s.offsets, s.is_match});
      break;
    case SplitBehavior::kContiguous:
      for (const MatchSegment& s : segments) {
        if (s.is_match == previous_match && !splits.empty()) {
          splits.back().first.second = s.offsets.second;
        } else {
          splits.push_back({s.offsets, false});
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const MatchSegment& s : segments) {
        if (s.is_match && !previous_match && !splits.empty()) {
          splits.back().first.second = s.offsets.second;
        } else {
          splits.push_back({s.offsets, false});
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !splits.empty()) {
          splits.back().first.first = it->offsets.first;
        } else {
          splits.push_back({it->offsets, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(splits.begin(), splits.end());
      break;
  }
  std::vector<NormalizedString> out;
  for (const auto& [offsets, remove] : splits) {
    if (remove) continue;
    std::optional<NormalizedString> slice = Slice(offsets.first, offsets.second);
    if (slice) out.push_back(std::move(*slice));
  }
  return out;
}

}  // namespace lensd::tokenizer
