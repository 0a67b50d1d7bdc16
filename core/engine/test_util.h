// Test-only helpers: write small model folders (config.json + model.safetensors) from tensors,
// in the byte layout the safetensors library writes, so unit tests need no Python.
#ifndef LENSD_CORE_ENGINE_TEST_UTIL_H_
#define LENSD_CORE_ENGINE_TEST_UTIL_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace lensd::engine::testing {

// Writes tensors (F32, F16, BF16, I64) to a .safetensors file; returns the bytes written.
size_t WriteSafetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors);

// A fresh, empty directory under the test's temporary directory.
std::string TempDir(const std::string& name);

// Writes a tiny random GPT-2 (d_model 8, 2 heads, 1 layer, vocab 16, context 8) into `dir`:
// config.json and model.safetensors with weights in `dtype`. Returns the tensors written.
std::map<std::string, at::Tensor> WriteTinyGpt2(const std::string& dir, at::ScalarType dtype);

void WriteText(const std::string& path, const std::string& text);
std::string ReadText(const std::string& path);

}  // namespace lensd::engine::testing

#endif  // LENSD_CORE_ENGINE_TEST_UTIL_H_
