// Float32 linear layers on the CPU through oneDNN's matmul (the `mkldnn::_linear_pointwise`
// operator PyTorch registers for its CPU compiler) instead of ATen's BLAS call. On the AMD EPYC
// machines measured, MKL takes its generic path: 110-175 GFLOP/s on two cores where oneDNN's
// AVX-512 kernels give 175-225 for the same products (tests/bench/decode_bench.py prints both);
// the results differ by float32 rounding only (about 1e-6 relative). bfloat16 products already
// reach oneDNN through at::linear.
#ifndef LENSD_CORE_ENGINE_MODEL_ONEDNN_LINEAR_H_
#define LENSD_CORE_ENGINE_MODEL_ONEDNN_LINEAR_H_

#include <ATen/core/Tensor.h>

namespace lensd::engine {

// Whether OneDnnLinear takes these operands: this libtorch has the operator; x [..., in] and
// w [out, in] (contiguous) and b (undefined or [out]) float32 on the CPU; nothing needs a
// gradient; no autocast region is open (autocast's at::linear casts to bfloat16 instead).
bool OneDnnLinearApplies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// x @ w^T + b (`b` may be undefined), as at::linear.
at::Tensor OneDnnLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_ONEDNN_LINEAR_H_
