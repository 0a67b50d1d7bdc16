// Decoders of tokenizer.json: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
// BPEDecoder.
#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

using ChainFn = std::function<std::vector<std::string>(std::vector<std::string>)>;

class FunctionDecoder : public Decoder {
 public:
  explicit FunctionDecoder(ChainFn fn) : fn_(std::move(fn)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    return fn_(std::move(tokens));
  }

 private:
  ChainFn fn_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> stages)
      : stages_(std::move(stages)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (const auto& stage : stages_) tokens = stage->DecodeChain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> stages_;
};

std::unique_ptr<Decoder> Make(ChainFn fn) {
  return std::make_unique<FunctionDecoder>(std::move(fn));
}

// Maps byte-level characters back to bytes; a token with any other character keeps its UTF-8.
std::vector<std::string> ByteLevelDecode(const std::vector<std::string>& tokens) {
  std::string bytes;
  for (const std::string& token : tokens) {
    std::string decoded;
    bool all_mapped = true;
    for (const CodePoint& cp : DecodeUtf8(token)) {
      const std::optional<uint8_t> b = CharToByte(cp.value);
      if (!b) {
        all_mapped = false;
        break;
      }
      decoded.push_back(static_cast<char>(*b));
    }
    bytes += all_mapped ? decoded : token;
  }
  return {Utf8Lossy(bytes)};
}

// Runs of <0xXX> tokens become their bytes when those form UTF-8, else one U+FFFD per byte.
std::vector<std::string> ByteFallbackDecode(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string pending;
  size_t pending_count = 0;
  const auto flush = [&]() {
    if (pending_count == 0) return;
    if (IsValidUtf8(pending)) {
      out.push_back(pending);
    } else {
      for (size_t i = 0; i < pending_count; ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    pending.clear();
    pending_count = 0;
  };
  for (std::string& token : tokens) {
    const auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
    if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>' && hex(token[3]) &&
        hex(token[4])) {
      pending.push_back(static_cast<char>(std::stoi(token.substr(3, 2), nullptr, 16)));
      ++pending_count;
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  return out;
}

absl::StatusOr<std::string> SingleChar(const nlohmann::json& json, absl::string_view key,
                                       absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(std::string value, json_fields::String(json, key, where));
  if (CountCodePoints(value) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", key, " must be one character"));
  }
  return value;
}

absl::StatusOr<std::unique_ptr<Decoder>> Strip(const nlohmann::json& json,
                                               absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(const std::string content, SingleChar(json, "content", where));
  LENSD_ASSIGN_OR_RETURN(const int64_t start, json_fields::Int(json, "start", 0, where));
  LENSD_ASSIGN_OR_RETURN(const int64_t stop, json_fields::Int(json, "stop", 0, where));
  const char32_t c = DecodeUtf8(content).front().value;
  return Make([c, start, stop](std::vector<std::string> tokens) {
    for (std::string& token : tokens) {
      const std::vector<CodePoint> chars = DecodeUtf8(token);
      size_t begin = 0;
      while (begin < chars.size() && static_cast<int64_t>(begin) < start &&
             chars[begin].value == c) {
        ++begin;
      }
      size_t end = chars.size();
      while (end > begin && static_cast<int64_t>(chars.size() - end) < stop &&
             chars[end - 1].value == c) {
        --end;
      }
      const size_t from = begin < chars.size() ? chars[begin].byte_offset : token.size();
      const size_t to = end < chars.size() ? chars[end].byte_offset : token.size();
      token = token.substr(from, to - from);
    }
    return tokens;
  });
}

absl::StatusOr<std::unique_ptr<Decoder>> Metaspace(const nlohmann::json& json,
                                                   absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(const std::string replacement, SingleChar(json, "replacement", where));
  LENSD_ASSIGN_OR_RETURN(auto scheme, json_fields::OptionalString(json, "prepend_scheme", where));
  if (!scheme) {
    LENSD_ASSIGN_OR_RETURN(const bool add,
                           json_fields::Bool(json, "add_prefix_space", true, where));
    scheme = add ? "always" : "never";
  }
  const bool strip_first = *scheme != "never";
  return Make([replacement, strip_first](std::vector<std::string> tokens) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      for (size_t pos = 0; pos < tokens[i].size();) {
        if (tokens[i].compare(pos, replacement.size(), replacement) == 0) {
          if (!(i == 0 && strip_first)) out.push_back(' ');
          pos += replacement.size();
        } else {
          out.push_back(tokens[i][pos++]);
        }
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& json,
                                                         absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(const std::string type, json_fields::String(json, "type", where));
  if (type == "Sequence") {
    LENSD_ASSIGN_OR_RETURN(auto stages,
                           ParseStageList<Decoder>(json, "decoders", where, DecoderFromJson));
    return std::unique_ptr<Decoder>(std::make_unique<SequenceDecoder>(std::move(stages)));
  }
  if (type == "ByteLevel") return Make(ByteLevelDecode);
  if (type == "ByteFallback") return Make(ByteFallbackDecode);
  if (type == "Fuse") {
    return Make([](const std::vector<std::string>& tokens) {
      return std::vector<std::string>{absl::StrJoin(tokens, "")};
    });
  }
  if (type == "Strip") return Strip(json, where);
  if (type == "Metaspace") return Metaspace(json, where);
  if (type == "Replace") {
    LENSD_ASSIGN_OR_RETURN(Pattern compiled, PatternField(json, where));
    LENSD_ASSIGN_OR_RETURN(const std::string content, json_fields::String(json, "content", where));
    return Make([p = std::move(compiled), content](std::vector<std::string> tokens) {
      for (std::string& token : tokens) {
        std::string out;
        for (const MatchSegment& s : p.FindMatches(token)) {
          out += s.is_match ? content
                            : token.substr(s.offsets.first, s.offsets.second - s.offsets.first);
        }
        token = std::move(out);
      }
      return tokens;
    });
  }
  if (type == "BPEDecoder") {
    LENSD_ASSIGN_OR_RETURN(const auto suffix, json_fields::OptionalString(json, "suffix", where));
    return Make([suffix = suffix.value_or("</w>")](std::vector<std::string> tokens) {
      for (size_t i = 0; i < tokens.size(); ++i) {
        const std::string with = i + 1 == tokens.size() ? "" : " ";
        for (size_t pos = tokens[i].find(suffix); pos != std::string::npos && !suffix.empty();
             pos = tokens[i].find(suffix, pos + with.size())) {
          tokens[i].replace(pos, suffix.size(), with);
        }
      }
      return tokens;
    });
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where, ".type \"", type,
      "\" is not supported; lensd reads Sequence, ByteLevel, Metaspace, Replace, ByteFallback, "
      "Fuse, Strip and BPEDecoder decoders"));
}

}  // namespace lensd::tokenizer
