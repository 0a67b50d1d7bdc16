#include "core/engine/formats/safetensors_header.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/json_fields.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference library's own limit

bool ParseDtype(absl::string_view name, FileDtype* out) {
  static const std::pair<const char*, FileDtype> kNames[] = {
      {"F64", FileDtype::kF64},   {"F32", FileDtype::kF32}, {"F16", FileDtype::kF16},
      {"BF16", FileDtype::kBF16}, {"I64", FileDtype::kI64}, {"I32", FileDtype::kI32},
      {"I16", FileDtype::kI16},   {"I8", FileDtype::kI8},   {"U8", FileDtype::kU8},
      {"BOOL", FileDtype::kBool}};
  for (const auto& [n, d] : kNames) {
    if (name == n) {
      *out = d;
      return true;
    }
  }
  return false;
}

absl::Status Bad(absl::string_view tensor, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tensor \"", tensor, "\": ", what));
}

absl::StatusOr<TensorEntry> ParseEntry(const std::string& name, const nlohmann::json& value,
                                       uint64_t data_size) {
  if (!value.is_object()) return Bad(name, "header entry is not an object");
  TensorEntry entry;
  const auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string() ||
      !ParseDtype(dtype->get<std::string>(), &entry.dtype)) {
    return Bad(name,
               absl::StrCat("dtype ", dtype == value.end() ? "missing" : dtype->dump(),
                            " is not one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL"));
  }
  const auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) return Bad(name, "shape missing or not a list");
  uint64_t elements = 1;
  for (const auto& dim : *shape) {
    if (!dim.is_number_unsigned()) return Bad(name, "shape holds a negative or non-integer size");
    const uint64_t d = dim.get<uint64_t>();
    if (d != 0 && elements > (UINT64_MAX / 16) / d) return Bad(name, "shape overflows");
    elements *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }
  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return Bad(name, "data_offsets must be [begin, end] with non-negative integers");
  }
  entry.begin = (*offsets)[0].get<uint64_t>();
  entry.end = (*offsets)[1].get<uint64_t>();
  if (entry.begin > entry.end || entry.end > data_size) {
    return Bad(name, absl::StrCat("data_offsets [", entry.begin, ", ", entry.end,
                                  "] fall outside the data region of ", data_size,
                                  " bytes (truncated file?)"));
  }
  if (entry.end - entry.begin != elements * ElementSize(entry.dtype)) {
    return Bad(name, absl::StrCat("holds ", entry.end - entry.begin, " bytes but shape [",
                                  absl::StrJoin(entry.shape, ", "), "] of ", DtypeName(entry.dtype),
                                  " needs ", elements * ElementSize(entry.dtype)));
  }
  return entry;
}

}  // namespace

size_t ElementSize(FileDtype dtype) {
  switch (dtype) {
    case FileDtype::kF64:
    case FileDtype::kI64:
      return 8;
    case FileDtype::kF32:
    case FileDtype::kI32:
      return 4;
    case FileDtype::kF16:
    case FileDtype::kBF16:
    case FileDtype::kI16:
      return 2;
    case FileDtype::kI8:
    case FileDtype::kU8:
    case FileDtype::kBool:
      return 1;
  }
  return 1;
}

const char* DtypeName(FileDtype dtype) {
  switch (dtype) {
    case FileDtype::kF64:
      return "F64";
    case FileDtype::kF32:
      return "F32";
    case FileDtype::kF16:
      return "F16";
    case FileDtype::kBF16:
      return "BF16";
    case FileDtype::kI64:
      return "I64";
    case FileDtype::kI32:
      return "I32";
    case FileDtype::kI16:
      return "I16";
    case FileDtype::kI8:
      return "I8";
    case FileDtype::kU8:
      return "U8";
    case FileDtype::kBool:
      return "BOOL";
  }
  return "?";
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view prefix,
                                                         uint64_t file_size) {
  if (file_size < 8 || prefix.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("file is ", file_size, " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) {
    header_size = (header_size << 8) | static_cast<unsigned char>(prefix[static_cast<size_t>(i)]);
  }
  if (header_size > kMaxHeaderBytes || header_size > file_size - 8) {
    return absl::InvalidArgumentError(absl::StrCat("header length ", header_size,
                                                   " exceeds the file (", file_size,
                                                   " bytes) or the 100 MiB limit"));
  }
  if (prefix.size() < 8 + header_size) {
    return absl::InvalidArgumentError("header is cut short");
  }
  auto json = json_fields::Parse(prefix.substr(8, header_size));
  if (!json.ok())
    return absl::InvalidArgumentError(absl::StrCat("header ", json.status().message()));
  if (!json->is_object()) return absl::InvalidArgumentError("header is not a JSON object");

  SafetensorsHeader header;
  header.data_start = 8 + header_size;
  const uint64_t data_size = file_size - header.data_start;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, value] : json->items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return absl::InvalidArgumentError("__metadata__ is not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) {
          return absl::InvalidArgumentError(absl::StrCat("__metadata__.", k, " is not a string"));
        }
        header.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    auto entry = ParseEntry(name, value, data_size);
    if (!entry.ok()) return entry.status();
    if (entry->end > entry->begin) ranges.emplace_back(entry->begin, entry->end);
    header.tensors.emplace(name, *std::move(entry));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensors overlap at data offset ", ranges[i].first));
    }
  }
  return header;
}

}  // namespace lensd::engine
