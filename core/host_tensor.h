// A dense tensor on the host as plain bytes: what crosses the torch-free interface between the
// server and the engine (activations out, intervention tensors in).
#ifndef LENSD_CORE_HOST_TENSOR_H_
#define LENSD_CORE_HOST_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

namespace lensd {

// Little-endian, row-major (C order) bytes.
struct HostTensor {
  std::string dtype;  // "float32", "float16", "bfloat16", "int64", "int32"
  std::vector<int64_t> shape;
  std::string data;

  bool empty() const { return dtype.empty() && shape.empty() && data.empty(); }
};

}  // namespace lensd

#endif  // LENSD_CORE_HOST_TENSOR_H_
