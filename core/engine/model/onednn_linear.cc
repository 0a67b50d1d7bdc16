#include "core/engine/model/onednn_linear.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>

#include <optional>
#include <string_view>

namespace lensd::engine {
namespace {

using PointwiseLinear = at::Tensor(const at::Tensor&, const at::Tensor&,
                                   const std::optional<at::Tensor>&, std::string_view,
                                   c10::List<std::optional<at::Scalar>>,
                                   std::optional<std::string_view>);

// mkldnn::_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars,
// str? algorithm), or null where this libtorch was built without it.
const c10::TypedOperatorHandle<PointwiseLinear>* Operator() {
  static const auto* const op = []() -> const c10::TypedOperatorHandle<PointwiseLinear>* {
    if (!at::hasMKLDNN()) return nullptr;
    const auto handle = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    if (!handle.has_value()) return nullptr;
    return new c10::TypedOperatorHandle<PointwiseLinear>(handle->typed<PointwiseLinear>());
  }();
  return op;
}

bool NeedsGradient(const at::Tensor& t) { return t.defined() && t.requires_grad(); }

}  // namespace

bool OneDnnLinearApplies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || x.dim() < 2 || x.numel() == 0) {
    return false;
  }
  if (w.scalar_type() != at::kFloat || w.dim() != 2 || !w.is_contiguous() || !w.device().is_cpu() ||
      w.size(1) != x.size(-1)) {
    return false;
  }
  if (b.defined() && (b.scalar_type() != at::kFloat || b.dim() != 1 || b.size(0) != w.size(0))) {
    return false;
  }
  if (at::autocast::is_autocast_enabled(at::kCPU)) return false;
  if (at::GradMode::is_enabled() && (NeedsGradient(x) || NeedsGradient(w) || NeedsGradient(b))) {
    return false;
  }
  return Operator() != nullptr;
}

at::Tensor OneDnnLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const std::optional<at::Tensor> bias =
      b.defined() ? std::optional<at::Tensor>(b.contiguous()) : std::nullopt;
  return Operator()->call(x.contiguous(), w, bias, "none", c10::List<std::optional<at::Scalar>>(),
                          std::nullopt);
}

}  // namespace lensd::engine
