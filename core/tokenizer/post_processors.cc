// Post-processors of tokenizer.json: TemplateProcessing, ByteLevel (offset trimming),
// RobertaProcessing, BertProcessing, Sequence. They run on character offsets.
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/components.h"
#include "core/tokenizer/stage_list.h"
#include "core/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

struct SpecialPiece {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
};

// One template item: either the sequence itself or a special token's ids.
struct TemplateItem {
  bool is_sequence;
  SpecialPiece special;
};

class TemplateProcessor : public PostProcessor {
 public:
  explicit TemplateProcessor(std::vector<TemplateItem> items) : items_(std::move(items)) {}

  void Process(EncodingParts* encoding, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    EncodingParts out;
    for (const TemplateItem& item : items_) {
      if (item.is_sequence) {
        out.ids.insert(out.ids.end(), encoding->ids.begin(), encoding->ids.end());
        out.tokens.insert(out.tokens.end(), encoding->tokens.begin(), encoding->tokens.end());
        out.offsets.insert(out.offsets.end(), encoding->offsets.begin(), encoding->offsets.end());
        out.special_tokens_mask.insert(out.special_tokens_mask.end(),
                                       encoding->special_tokens_mask.begin(),
                                       encoding->special_tokens_mask.end());
        continue;
      }
      for (size_t i = 0; i < item.special.ids.size(); ++i) {
        out.ids.push_back(item.special.ids[i]);
        out.tokens.push_back(item.special.tokens[i]);
        out.offsets.emplace_back(0, 0);
        out.special_tokens_mask.push_back(1);
      }
    }
    *encoding = std::move(out);
  }

 private:
  std::vector<TemplateItem> items_;
};

// tokenizers' byte_level::process_offsets: offsets exclude leading and trailing spaces.
void TrimOffsets(EncodingParts* encoding, bool add_prefix_space) {
  const auto is_space = [](char32_t c) { return c == ByteToChar(' ') || IsWhitespace(c); };
  for (size_t i = 0; i < encoding->tokens.size(); ++i) {
    const std::vector<CodePoint> chars = DecodeUtf8(encoding->tokens[i]);
    size_t leading = 0;
    while (leading < chars.size() && is_space(chars[leading].value)) ++leading;
    size_t trailing = 0;
    while (trailing < chars.size() && is_space(chars[chars.size() - 1 - trailing].value)) {
      ++trailing;
    }
    Offsets& offsets = encoding->offsets[i];
    if (leading > 0) {
      const bool is_first = i == 0 || offsets.first == 0;
      if (is_first && add_prefix_space && leading == 1) leading = 0;
      offsets.first = std::min(offsets.first + leading, offsets.second);
    }
    if (trailing > 0 && offsets.second >= trailing) {
      offsets.second = std::max(offsets.second - trailing, offsets.first);
    }
  }
}

class ByteLevelProcessor : public PostProcessor {
 public:
  ByteLevelProcessor(bool trim_offsets, bool add_prefix_space)
      : trim_offsets_(trim_offsets), add_prefix_space_(add_prefix_space) {}
  void Process(EncodingParts* encoding, bool) const override {
    if (trim_offsets_) TrimOffsets(encoding, add_prefix_space_);
  }

 private:
  bool trim_offsets_;
  bool add_prefix_space_;
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> stages)
      : stages_(std::move(stages)) {}
  void Process(EncodingParts* encoding, bool add_special_tokens) const override {
    for (const auto& stage : stages_) stage->Process(encoding, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> stages_;
};

absl::StatusOr<std::unique_ptr<PostProcessor>> Template(const nlohmann::json& json,
                                                        absl::string_view where) {
  const auto single = json.find("single");
  const auto specials = json.find("special_tokens");
  if (single == json.end() || !single->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".single must be an array"));
  }
  std::vector<TemplateItem> items;
  for (size_t i = 0; i < single->size(); ++i) {
    const nlohmann::json& item = (*single)[i];
    const std::string at = absl::StrCat(where, ".single[", i, "]");
    if (item.contains("Sequence")) {
      items.push_back({true, {}});
      continue;
    }
    LENSD_ASSIGN_OR_RETURN(const std::string name,
                           json_fields::String(item.value("SpecialToken", nlohmann::json()), "id",
                                               at + ".SpecialToken"));
    if (specials == json.end() || !specials->contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(at, " names special token \"", name,
                                                     "\" missing from ", where, ".special_tokens"));
    }
    const nlohmann::json& special = (*specials)[name];
    SpecialPiece piece;
    if (!special.value("ids", nlohmann::json()).is_array() ||
        !special.value("tokens", nlohmann::json()).is_array() ||
        special["ids"].size() != special["tokens"].size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".special_tokens[\"", name, "\"] needs arrays ids and tokens of equal length"));
    }
    for (size_t k = 0; k < special["ids"].size(); ++k) {
      piece.ids.push_back(special["ids"][k].get<int32_t>());
      piece.tokens.push_back(special["tokens"][k].get<std::string>());
    }
    items.push_back({false, std::move(piece)});
  }
  return std::unique_ptr<PostProcessor>(std::make_unique<TemplateProcessor>(std::move(items)));
}

// RobertaProcessing / BertProcessing: "cls" and "sep" are [token, id] pairs around the sequence.
absl::StatusOr<std::unique_ptr<PostProcessor>> ClsSep(const nlohmann::json& json,
                                                      absl::string_view where, bool roberta) {
  std::vector<TemplateItem> items(3);
  const char* keys[] = {"cls", "sep"};
  for (int k = 0; k < 2; ++k) {
    const auto pair = json.find(keys[k]);
    if (pair == json.end() || !pair->is_array() || pair->size() != 2 || !(*pair)[0].is_string() ||
        !(*pair)[1].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".", keys[k], " must be [token, id]"));
    }
    items[k == 0 ? 0 : 2] = {false, {{(*pair)[1].get<int32_t>()}, {(*pair)[0].get<std::string>()}}};
  }
  items[1].is_sequence = true;
  std::vector<std::unique_ptr<PostProcessor>> stages;
  if (roberta) {
    LENSD_ASSIGN_OR_RETURN(const bool trim, json_fields::Bool(json, "trim_offsets", true, where));
    LENSD_ASSIGN_OR_RETURN(const bool prefix,
                           json_fields::Bool(json, "add_prefix_space", true, where));
    stages.push_back(std::make_unique<ByteLevelProcessor>(trim, prefix));
  }
  stages.push_back(std::make_unique<TemplateProcessor>(std::move(items)));
  return std::unique_ptr<PostProcessor>(std::make_unique<SequenceProcessor>(std::move(stages)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessorFromJson(const nlohmann::json& json,
                                                                     absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(const std::string type, json_fields::String(json, "type", where));
  if (type == "TemplateProcessing") return Template(json, where);
  if (type == "ByteLevel") {
    LENSD_ASSIGN_OR_RETURN(const bool trim, json_fields::Bool(json, "trim_offsets", true, where));
    LENSD_ASSIGN_OR_RETURN(const bool prefix,
                           json_fields::Bool(json, "add_prefix_space", true, where));
    return std::unique_ptr<PostProcessor>(std::make_unique<ByteLevelProcessor>(trim, prefix));
  }
  if (type == "RobertaProcessing") return ClsSep(json, where, true);
  if (type == "BertProcessing") return ClsSep(json, where, false);
  if (type == "Sequence") {
    LENSD_ASSIGN_OR_RETURN(auto stages, ParseStageList<PostProcessor>(json, "processors", where,
                                                                      PostProcessorFromJson));
    return std::unique_ptr<PostProcessor>(std::make_unique<SequenceProcessor>(std::move(stages)));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where, ".type \"", type,
      "\" is not supported; lensd reads TemplateProcessing, ByteLevel, RobertaProcessing, "
      "BertProcessing and Sequence post-processors"));
}

}  // namespace lensd::tokenizer
