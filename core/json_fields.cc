#include "core/json_fields.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lensd::json_fields {
namespace {

const nlohmann::json* Find(const nlohmann::json& object, absl::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(std::string(key));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status Missing(absl::string_view where, absl::string_view key) {
  return absl::InvalidArgumentError(absl::StrCat(FieldPath(where, key), " is missing"));
}

absl::Status WrongType(absl::string_view where, absl::string_view key, absl::string_view want,
                       const nlohmann::json& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(FieldPath(where, key), " must be ", want, ", got ", got.dump().substr(0, 80)));
}

}  // namespace

std::string FieldPath(absl::string_view where, absl::string_view key) {
  return where.empty() ? std::string(key) : absl::StrCat(where, ".", key);
}

absl::StatusOr<nlohmann::json> Parse(absl::string_view text) {
  // nlohmann reports the failing byte only through its exception; it stops here.
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", e.what()));
  }
}

bool Has(const nlohmann::json& object, absl::string_view key) {
  return Find(object, key) != nullptr;
}

bool IsNull(const nlohmann::json& object, absl::string_view key) {
  if (!object.is_object()) return false;
  const auto it = object.find(std::string(key));
  return it != object.end() && it->is_null();
}

absl::StatusOr<std::string> String(const nlohmann::json& object, absl::string_view key,
                                   absl::string_view where) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return Missing(where, key);
  if (!value->is_string()) return WrongType(where, key, "a string", *value);
  return value->get<std::string>();
}

absl::StatusOr<std::optional<std::string>> OptionalString(const nlohmann::json& object,
                                                          absl::string_view key,
                                                          absl::string_view where) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return WrongType(where, key, "a string or null", *value);
  return std::optional<std::string>(value->get<std::string>());
}

absl::StatusOr<bool> Bool(const nlohmann::json& object, absl::string_view key, bool fallback,
                          absl::string_view where) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) return WrongType(where, key, "true or false", *value);
  return value->get<bool>();
}

absl::StatusOr<int64_t> Int(const nlohmann::json& object, absl::string_view key,
                            absl::string_view where) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return Missing(where, key);
  if (value->is_number_integer()) return value->get<int64_t>();
  if (value->is_number_float()) {
    const double d = value->get<double>();
    if (std::floor(d) == d && std::abs(d) < 9e15) return static_cast<int64_t>(d);
  }
  return WrongType(where, key, "an integer", *value);
}

absl::StatusOr<int64_t> Int(const nlohmann::json& object, absl::string_view key, int64_t fallback,
                            absl::string_view where) {
  if (Find(object, key) == nullptr) return fallback;
  return Int(object, key, where);
}

absl::StatusOr<double> Double(const nlohmann::json& object, absl::string_view key,
                              absl::string_view where) {
  const nlohmann::json* value = Find(object, key);
  if (value == nullptr) return Missing(where, key);
  if (!value->is_number()) return WrongType(where, key, "a number", *value);
  return value->get<double>();
}

absl::StatusOr<double> Double(const nlohmann::json& object, absl::string_view key, double fallback,
                              absl::string_view where) {
  if (Find(object, key) == nullptr) return fallback;
  return Double(object, key, where);
}

}  // namespace lensd::json_fields
