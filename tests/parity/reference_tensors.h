// Test helper: reads every tensor of a reference .safetensors file written by the Python side.
#ifndef LENSD_TESTS_PARITY_REFERENCE_TENSORS_H_
#define LENSD_TESTS_PARITY_REFERENCE_TENSORS_H_

#include <ATen/ATen.h>

#include <cstring>
#include <map>
#include <string>

#include "core/engine/formats/safetensors_file.h"
#include "gtest/gtest.h"

namespace lensd::testing {

inline at::ScalarType ToTorch(engine::FileDtype dtype) {
  switch (dtype) {
    case engine::FileDtype::kF32:
      return at::kFloat;
    case engine::FileDtype::kF64:
      return at::kDouble;
    case engine::FileDtype::kF16:
      return at::kHalf;
    case engine::FileDtype::kBF16:
      return at::kBFloat16;
    case engine::FileDtype::kI64:
      return at::kLong;
    case engine::FileDtype::kI32:
      return at::kInt;
    case engine::FileDtype::kU8:
      return at::kByte;
    case engine::FileDtype::kBool:
      return at::kBool;
    default:
      return at::kChar;
  }
}

inline std::map<std::string, at::Tensor> ReadReference(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  auto file = engine::SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return out;
  for (const auto& [name, entry] : (*file)->header().tensors) {
    at::Tensor t = at::empty(entry.shape, at::TensorOptions().dtype(ToTorch(entry.dtype)));
    const auto bytes = (*file)->Bytes(entry);
    std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
    out[name] = t;
  }
  return out;
}

// Largest |a - b| over the positions where mask [B, T] is set (a, b: [B, T, ...]).
inline double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b, const at::Tensor& mask) {
  at::Tensor diff = (a.to(at::kFloat) - b.to(at::kFloat)).abs();
  while (diff.dim() > 2) diff = std::get<0>(diff.max(-1));
  return (diff * mask.to(at::kFloat)).max().item<double>();
}

}  // namespace lensd::testing

#endif  // LENSD_TESTS_PARITY_REFERENCE_TENSORS_H_
