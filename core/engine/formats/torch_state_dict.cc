#include "core/engine/formats/torch_state_dict.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/engine/formats/pickle_reader.h"
#include "core/engine/formats/zip_reader.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

using Kind = PickleValue::Kind;

bool StorageDtype(absl::string_view global, FileDtype* out) {
  static const std::pair<const char*, FileDtype> kTypes[] = {
      {"torch.FloatStorage", FileDtype::kF32},     {"torch.HalfStorage", FileDtype::kF16},
      {"torch.BFloat16Storage", FileDtype::kBF16}, {"torch.DoubleStorage", FileDtype::kF64},
      {"torch.LongStorage", FileDtype::kI64},      {"torch.IntStorage", FileDtype::kI32},
      {"torch.ShortStorage", FileDtype::kI16},     {"torch.CharStorage", FileDtype::kI8},
      {"torch.ByteStorage", FileDtype::kU8},       {"torch.BoolStorage", FileDtype::kBool}};
  for (const auto& [name, dtype] : kTypes) {
    if (global == name) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::vector<int64_t>> IntTuple(const PickleValue* v, absl::string_view what) {
  if (v->kind != Kind::kTuple)
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a tuple"));
  std::vector<int64_t> out;
  for (const PickleValue* item : v->items) {
    if (item->kind != Kind::kInt || item->integer < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " holds a non-integer or negative entry"));
    }
    out.push_back(item->integer);
  }
  return out;
}

// What the pickle may call: dict constructors and tensor rebuilds. A rebuilt tensor is returned
// as an object holding its arguments, interpreted once the archive's storages are known.
absl::StatusOr<const PickleValue*> AllowedCall(absl::string_view global, const PickleValue& args,
                                               PickleArena* arena) {
  if (global == "collections.OrderedDict" || global == "builtins.dict") {
    if (!args.items.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("pickle: ", global, " with arguments"));
    }
    return arena->New(Kind::kDict);
  }
  if (global == "torch._utils._rebuild_tensor_v2" || global == "torch._utils._rebuild_tensor") {
    PickleValue* tensor = arena->New(Kind::kObject);
    tensor->text = std::string(global);
    tensor->items = args.items;
    return tensor;
  }
  if (global == "torch._utils._rebuild_parameter" && !args.items.empty() &&
      args.items[0]->kind == Kind::kObject) {
    return args.items[0];
  }
  return absl::InvalidArgumentError(
      absl::StrCat("pickle calls ", global,
                   ", which a file of tensors does not need; lensd reads only dicts "
                   "of tensors"));
}

absl::StatusOr<StoredTensor> Interpret(const PickleValue& tensor,
                                       const std::map<std::string, absl::string_view>& storages) {
  if (tensor.kind != Kind::kObject || tensor.items.size() < 4) {
    return absl::InvalidArgumentError("value is not a tensor");
  }
  const PickleValue* pid = tensor.items[0];
  if (pid->kind != Kind::kPersistentId || pid->items.size() != 1 ||
      pid->items[0]->kind != Kind::kTuple || pid->items[0]->items.size() < 5) {
    return absl::InvalidArgumentError("tensor storage is not a persistent ('storage', ...) record");
  }
  const auto& record = pid->items[0]->items;
  StoredTensor out;
  if (record[1]->kind != Kind::kGlobal || !StorageDtype(record[1]->text, &out.dtype)) {
    return absl::InvalidArgumentError("tensor storage has an unknown storage type");
  }
  if (record[2]->kind != Kind::kString || record[4]->kind != Kind::kInt) {
    return absl::InvalidArgumentError("tensor storage key or size is malformed");
  }
  const auto storage = storages.find(record[2]->text);
  if (storage == storages.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("storage ", record[2]->text, " is missing from the archive"));
  }
  const uint64_t numel = static_cast<uint64_t>(record[4]->integer);
  if (numel > storage->second.size() / ElementSize(out.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("storage ", record[2]->text, " is shorter than its size"));
  }
  out.storage = storage->second.substr(0, numel * ElementSize(out.dtype));
  if (tensor.items[1]->kind != Kind::kInt || tensor.items[1]->integer < 0) {
    return absl::InvalidArgumentError("tensor storage offset is malformed");
  }
  out.storage_offset = tensor.items[1]->integer;
  LENSD_ASSIGN_OR_RETURN(out.shape, IntTuple(tensor.items[2], "tensor size"));
  LENSD_ASSIGN_OR_RETURN(out.strides, IntTuple(tensor.items[3], "tensor stride"));
  if (out.shape.size() != out.strides.size()) {
    return absl::InvalidArgumentError("tensor size and stride differ in length");
  }
  // The furthest element the view reaches must lie inside the storage.
  uint64_t last = static_cast<uint64_t>(out.storage_offset);
  bool empty = false;
  for (size_t i = 0; i < out.shape.size(); ++i) {
    if (out.shape[i] == 0) empty = true;
    if (out.shape[i] > (int64_t{1} << 40) || out.strides[i] > (int64_t{1} << 40)) {
      return absl::InvalidArgumentError("tensor size or stride is implausibly large");
    }
    if (out.shape[i] > 0)
      last += static_cast<uint64_t>(out.shape[i] - 1) * static_cast<uint64_t>(out.strides[i]);
  }
  if (!empty && last >= numel) {
    return absl::InvalidArgumentError("tensor reaches outside its storage");
  }
  return out;
}

}  // namespace

absl::StatusOr<std::map<std::string, StoredTensor>> ReadTorchStateDict(absl::string_view archive) {
  if (archive.size() >= 2 && static_cast<unsigned char>(archive[0]) == 0x80) {
    return absl::InvalidArgumentError(
        "legacy (pre-1.6) torch.save format; re-save with a current torch or use safetensors");
  }
  LENSD_ASSIGN_OR_RETURN(const std::vector<ZipEntry> entries, ReadZipDirectory(archive));
  const ZipEntry* pickle = nullptr;
  for (const ZipEntry& e : entries) {
    if (absl::EndsWith(e.name, "/data.pkl") || e.name == "data.pkl") {
      if (pickle != nullptr)
        return absl::InvalidArgumentError("archive holds two data.pkl entries");
      pickle = &e;
    }
  }
  if (pickle == nullptr)
    return absl::InvalidArgumentError("archive has no data.pkl (not a torch.save file)");
  const std::string prefix = pickle->name.substr(0, pickle->name.size() - 8);  // "<archive>/"
  std::map<std::string, absl::string_view> storages;
  for (const ZipEntry& e : entries) {
    if (absl::StartsWith(e.name, prefix + "data/")) {
      LENSD_ASSIGN_OR_RETURN(storages[e.name.substr(prefix.size() + 5)], ZipEntryBytes(archive, e));
    }
  }
  LENSD_ASSIGN_OR_RETURN(const absl::string_view program, ZipEntryBytes(archive, *pickle));
  PickleArena arena;
  LENSD_ASSIGN_OR_RETURN(const PickleValue* root, Unpickle(program, AllowedCall, &arena));
  if (root->kind != Kind::kDict) {
    return absl::InvalidArgumentError("the saved object is not a dict of tensors");
  }
  std::map<std::string, StoredTensor> out;
  for (const auto& [key, value] : root->entries) {
    if (key->kind != Kind::kString) return absl::InvalidArgumentError("a dict key is not a string");
    auto tensor = Interpret(*value, storages);
    if (!tensor.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", key->text, "\": ", tensor.status().message()));
    }
    out[key->text] = *std::move(tensor);
  }
  return out;
}

}  // namespace lensd::engine
