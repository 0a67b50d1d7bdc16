#include "core/engine/formats/safetensors_writer.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {

std::optional<FileDtype> DtypeFromName(const std::string& name) {
  static const std::map<std::string, FileDtype> kNames = {
      {"float64", FileDtype::kF64},   {"float32", FileDtype::kF32}, {"float16", FileDtype::kF16},
      {"bfloat16", FileDtype::kBF16}, {"int64", FileDtype::kI64},   {"int32", FileDtype::kI32},
      {"int16", FileDtype::kI16},     {"int8", FileDtype::kI8},     {"uint8", FileDtype::kU8},
      {"bool", FileDtype::kBool}};
  const auto it = kNames.find(name);
  if (it == kNames.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::string> SafetensorsBytes(const std::vector<TensorToWrite>& tensors,
                                             const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.key.empty() || t.key == "__metadata__" || !names.insert(t.key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor name \"", t.key, "\" is empty, reserved or repeated"));
    }
    uint64_t numel = 1;
    for (const int64_t d : t.shape) numel *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
    if (numel * ElementSize(t.dtype) != t.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.key, "\": ", t.data.size(),
                                                     " bytes for ", numel, " elements of ",
                                                     DtypeName(t.dtype)));
    }
    header[t.key] = {{"dtype", DtypeName(t.dtype)},
                     {"shape", t.shape},
                     {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  out += text;
  for (const TensorToWrite& t : tensors) out += t.data;
  return out;
}

}  // namespace lensd::engine
