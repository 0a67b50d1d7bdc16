// Normalizers of tokenizer.json: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace,
// Prepend.
#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "core/tokenizer/components.h"
#include "core/tokenizer/pattern.h"
#include "core/tokenizer/stage_list.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

class FunctionNormalizer : public Normalizer {
 public:
  explicit FunctionNormalizer(std::function<void(NormalizedString*)> fn) : fn_(std::move(fn)) {}
  void Normalize(NormalizedString* text) const override { fn_(text); }

 private:
  std::function<void(NormalizedString*)> fn_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> stages)
      : stages_(std::move(stages)) {}
  void Normalize(NormalizedString* text) const override {
    for (const auto& stage : stages_) stage->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> stages_;
};

std::unique_ptr<Normalizer> Make(std::function<void(NormalizedString*)> fn) {
  return std::make_unique<FunctionNormalizer>(std::move(fn));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& json,
                                                               absl::string_view where) {
  LENSD_ASSIGN_OR_RETURN(const std::string type, json_fields::String(json, "type", where));
  if (type == "Sequence") {
    LENSD_ASSIGN_OR_RETURN(
        auto stages, ParseStageList<Normalizer>(json, "normalizers", where, NormalizerFromJson));
    return std::unique_ptr<Normalizer>(std::make_unique<SequenceNormalizer>(std::move(stages)));
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    return Make([type](NormalizedString* s) { s->UnicodeNormalize(type); });
  }
  if (type == "Lowercase") return Make([](NormalizedString* s) { s->Lowercase(); });
  if (type == "Strip") {
    LENSD_ASSIGN_OR_RETURN(const bool left, json_fields::Bool(json, "strip_left", true, where));
    LENSD_ASSIGN_OR_RETURN(const bool right, json_fields::Bool(json, "strip_right", true, where));
    return Make([left, right](NormalizedString* s) { s->Strip(left, right); });
  }
  if (type == "Replace") {
    LENSD_ASSIGN_OR_RETURN(Pattern compiled, PatternField(json, where));
    LENSD_ASSIGN_OR_RETURN(const std::string content, json_fields::String(json, "content", where));
    return Make([p = std::move(compiled), content](NormalizedString* s) {
      s->Replace(p.FindMatches(s->get()), content);
    });
  }
  if (type == "Prepend") {
    LENSD_ASSIGN_OR_RETURN(const std::string prepend, json_fields::String(json, "prepend", where));
    return Make([prepend](NormalizedString* s) { s->Prepend(prepend); });
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where, ".type \"", type,
      "\" is not supported; lensd reads Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, "
      "Replace and Prepend normalizers"));
}

}  // namespace lensd::tokenizer
