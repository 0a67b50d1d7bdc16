#include "core/engine/model/checkpoint.h"

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/engine/model/torch_errors.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

std::optional<at::ScalarType> TorchDtype(FileDtype dtype) {
  switch (dtype) {
    case FileDtype::kF64:
      return at::kDouble;
    case FileDtype::kF32:
      return at::kFloat;
    case FileDtype::kF16:
      return at::kHalf;
    case FileDtype::kBF16:
      return at::kBFloat16;
    default:
      return std::nullopt;
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = model_dir;
  const std::string single = (fs::path(model_dir) / "model.safetensors").string();
  const std::string index_path = (fs::path(model_dir) / "model.safetensors.index.json").string();
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(single)) {
    shard_names.push_back("model.safetensors");
  } else if (fs::exists(index_path)) {
    LENSD_ASSIGN_OR_RETURN(const std::string text, ReadFile(index_path));
    auto json = json_fields::Parse(text);
    if (!json.ok())
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", json.status().message()));
    const auto map = json->find("weight_map");
    if (map == json->end() || !map->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map is missing"));
    }
    for (const auto& [tensor, file] : map->items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map[\"", tensor,
                                                       "\"] must name a file in the same folder"));
      }
      weight_map[tensor] = file.get<std::string>();
      if (std::find(shard_names.begin(), shard_names.end(), weight_map[tensor]) ==
          shard_names.end()) {
        shard_names.push_back(weight_map[tensor]);
      }
    }
  } else {
    return absl::NotFoundError(
        absl::StrCat(model_dir,
                     ": no model.safetensors or model.safetensors.index.json (lensd reads "
                     "safetensors checkpoints)"));
  }
  for (const std::string& shard : shard_names) {
    LENSD_ASSIGN_OR_RETURN(auto file,
                           SafetensorsFile::Open((fs::path(model_dir) / shard).string()));
    const size_t position = ckpt->files_.size();
    for (const auto& [name, entry] : file->header().tensors) {
      const auto listed = weight_map.find(name);
      if (weight_map.empty() || (listed != weight_map.end() && listed->second == shard)) {
        ckpt->index_[name] = position;
      }
    }
    ckpt->files_.push_back(std::move(file));
  }
  for (const auto& [tensor, shard] : weight_map) {
    if (ckpt->index_.count(tensor) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": lists \"", tensor, "\" in ",
                                                     shard, ", which does not hold it"));
    }
  }
  return ckpt;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenFile(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = fs::path(path).parent_path().string();
  LENSD_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  for (const auto& [name, entry] : file->header().tensors) ckpt->index_[name] = 0;
  ckpt->files_.push_back(std::move(file));
  return ckpt;
}

std::optional<std::vector<int64_t>> Checkpoint::Shape(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return files_[it->second]->header().tensors.at(name).shape;
}

std::optional<at::ScalarType> Checkpoint::StoredDtype(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return TorchDtype(files_[it->second]->header().tensors.at(name).dtype);
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, position] : index_) names.push_back(name);
  return names;
}

int64_t Checkpoint::FloatElements() const {
  int64_t total = 0;
  for (const auto& [name, position] : index_) {
    const TensorEntry& entry = files_[position]->header().tensors.at(name);
    if (entry.dtype != FileDtype::kF64 && entry.dtype != FileDtype::kF32 &&
        entry.dtype != FileDtype::kF16 && entry.dtype != FileDtype::kBF16) {
      continue;
    }
    int64_t n = 1;
    for (const int64_t d : entry.shape) n *= d;
    total += n;
  }
  return total;
}

std::string Checkpoint::Describe() const {
  std::vector<std::string> names;
  names.reserve(files_.size());
  for (const auto& f : files_)
    names.push_back(std::filesystem::path(f->path()).filename().string());
  return absl::StrCat(dir_, "/{", absl::StrJoin(names, ","), "}");
}

absl::Status Checkpoint::LoadInto(const std::string& name, const at::Tensor& destination) const {
  const auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Describe(), ": tensor \"", name, "\" is missing"));
  }
  const SafetensorsFile& file = *files_[it->second];
  const TensorEntry& entry = file.header().tensors.at(name);
  const std::string where = absl::StrCat(file.path(), ": tensor \"", name, "\"");
  const std::optional<at::ScalarType> stored = TorchDtype(entry.dtype);
  if (!stored) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has dtype ", DtypeName(entry.dtype),
                                                   "; weights must be F32, F16, BF16 or F64"));
  }
  const std::vector<int64_t> want = destination.sizes().vec();
  if (entry.shape != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " has shape [", absl::StrJoin(entry.shape, ", "),
                     "], the config implies [", absl::StrJoin(want, ", "), "]"));
  }
  return CatchTorch(where, [&]() -> absl::Status {
    const absl::string_view bytes = file.Bytes(entry);
    if (bytes.empty()) return absl::OkStatus();
    const size_t element = ElementSize(entry.dtype);
    // Rows along dim 0, copied a chunk at a time so that at most one chunk of the file is
    // resident beside the destination.
    const int64_t rows = entry.shape.empty() ? 1 : entry.shape[0];
    const size_t row_bytes = bytes.size() / static_cast<size_t>(std::max<int64_t>(rows, 1));
    const int64_t chunk_rows =
        std::max<int64_t>(1, static_cast<int64_t>((8u << 20) / std::max<size_t>(row_bytes, 1)));
    std::vector<int64_t> chunk_shape = entry.shape.empty() ? std::vector<int64_t>{} : entry.shape;
    for (int64_t row = 0; row < rows; row += chunk_rows) {
      const int64_t n = std::min(chunk_rows, rows - row);
      const char* src = bytes.data() + static_cast<size_t>(row) * row_bytes;
      if (!chunk_shape.empty()) chunk_shape[0] = n;
      at::Tensor source;
      if (reinterpret_cast<uintptr_t>(src) % element == 0) {
        source =
            at::from_blob(const_cast<char*>(src), chunk_shape, at::TensorOptions().dtype(stored));
      } else {  // misaligned in the file: copy to an aligned buffer first
        source = at::empty(chunk_shape, at::TensorOptions().dtype(stored));
        std::memcpy(source.data_ptr(), src, static_cast<size_t>(n) * row_bytes);
      }
      (entry.shape.empty() ? destination : destination.narrow(0, row, n)).copy_(source);
      const uint64_t offset = entry.begin + static_cast<uint64_t>(row) * row_bytes;
      file.Release(offset, offset + static_cast<uint64_t>(n) * row_bytes);
    }
    return absl::OkStatus();
  });
}

absl::Status WeightLoader::Fill(const std::string& name, const at::Tensor& destination) {
  const std::string resolved = Resolve(name);
  LENSD_RETURN_IF_ERROR(
      checkpoint_->LoadInto(resolved.empty() ? prefixes_.front() + name : resolved, destination));
  bytes_loaded_ += static_cast<int64_t>(destination.numel() * destination.element_size());
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> WeightLoader::Get(const std::string& name, std::vector<int64_t> shape) {
  LENSD_ASSIGN_OR_RETURN(at::Tensor out, CatchTorch(name, [&]() -> absl::StatusOr<at::Tensor> {
                           return at::empty(shape,
                                            at::TensorOptions().dtype(dtype_).device(device_));
                         }));
  LENSD_RETURN_IF_ERROR(Fill(name, out));
  return out;
}

absl::StatusOr<at::Tensor> WeightLoader::GetTransposed(const std::string& name, int64_t in,
                                                       int64_t out_features) {
  LENSD_ASSIGN_OR_RETURN(
      at::Tensor weight, CatchTorch(name, [&]() -> absl::StatusOr<at::Tensor> {
        return at::empty({out_features, in}, at::TensorOptions().dtype(dtype_).device(device_));
      }));
  LENSD_RETURN_IF_ERROR(Fill(name, weight.t()));
  return weight;
}

absl::StatusOr<at::Tensor> WeightLoader::GetStacked(
    const std::vector<std::string>& names, const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<int64_t> total = shapes.front();
  total[0] = 0;
  for (const auto& shape : shapes) total[0] += shape[0];
  LENSD_ASSIGN_OR_RETURN(
      at::Tensor out, CatchTorch(names.front(), [&]() -> absl::StatusOr<at::Tensor> {
        return at::empty(total, at::TensorOptions().dtype(dtype_).device(device_));
      }));
  int64_t row = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    at::Tensor slice = out.narrow(0, row, shapes[i][0]);
    if (slice.sizes().vec() != shapes[i]) {
      return absl::InvalidArgumentError(absl::StrCat(names[i], ": stacked shapes disagree"));
    }
    LENSD_RETURN_IF_ERROR(Fill(names[i], slice));
    row += shapes[i][0];
  }
  return out;
}

bool WeightLoader::Has(const std::string& name) const { return !Resolve(name).empty(); }

std::string WeightLoader::Resolve(const std::string& name) const {
  for (const std::string& prefix : prefixes_) {
    if (checkpoint_->Has(prefix + name)) return prefix + name;
  }
  return "";
}

}  // namespace lensd::engine
