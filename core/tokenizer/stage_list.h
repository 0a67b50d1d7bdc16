// Parsing of the "Sequence" stages of tokenizer.json: an array of stage objects under `key`.
#ifndef LENSD_CORE_TOKENIZER_STAGE_LIST_H_
#define LENSD_CORE_TOKENIZER_STAGE_LIST_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {

// Builds each element of json[key] with factory(element, "<where>.<key>[i]"); INVALID_ARGUMENT
// when json[key] is not an array or an element is malformed.
template <typename Stage, typename Factory>
absl::StatusOr<std::vector<std::unique_ptr<Stage>>> ParseStageList(const nlohmann::json& json,
                                                                   const char* key,
                                                                   absl::string_view where,
                                                                   Factory factory) {
  const auto list = json.find(key);
  if (list == json.end() || !list->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", key, " must be an array"));
  }
  std::vector<std::unique_ptr<Stage>> stages;
  stages.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    LENSD_ASSIGN_OR_RETURN(std::unique_ptr<Stage> stage,
                           factory((*list)[i], absl::StrCat(where, ".", key, "[", i, "]")));
    stages.push_back(std::move(stage));
  }
  return stages;
}

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_STAGE_LIST_H_
