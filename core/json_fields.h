// Typed access to fields of JSON objects (config.json, tokenizer.json, cfg.json) with errors that
// name the field and what would be right. `where` is the path of the object, e.g. "model" or
// "pre_tokenizer.pretokenizers[1]"; messages read "<where>.<key> must be ...".
// All functions are pure and thread-safe.
#ifndef LENSD_CORE_JSON_FIELDS_H_
#define LENSD_CORE_JSON_FIELDS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace lensd::json_fields {

// Parses JSON text; INVALID_ARGUMENT with the line and column of the syntax error.
absl::StatusOr<nlohmann::json> Parse(absl::string_view text);

// True when `key` is present and not null.
bool Has(const nlohmann::json& object, absl::string_view key);
// True when `key` is present with the value null (configs that say "none" this way).
bool IsNull(const nlohmann::json& object, absl::string_view key);

absl::StatusOr<std::string> String(const nlohmann::json& object, absl::string_view key,
                                   absl::string_view where);
absl::StatusOr<std::optional<std::string>> OptionalString(const nlohmann::json& object,
                                                          absl::string_view key,
                                                          absl::string_view where);
absl::StatusOr<bool> Bool(const nlohmann::json& object, absl::string_view key, bool fallback,
                          absl::string_view where);
absl::StatusOr<int64_t> Int(const nlohmann::json& object, absl::string_view key,
                            absl::string_view where);
absl::StatusOr<int64_t> Int(const nlohmann::json& object, absl::string_view key, int64_t fallback,
                            absl::string_view where);
absl::StatusOr<double> Double(const nlohmann::json& object, absl::string_view key,
                              absl::string_view where);
absl::StatusOr<double> Double(const nlohmann::json& object, absl::string_view key, double fallback,
                              absl::string_view where);

// "<where>.<key>", or just key when `where` is empty.
std::string FieldPath(absl::string_view where, absl::string_view key);

}  // namespace lensd::json_fields

#endif  // LENSD_CORE_JSON_FIELDS_H_
