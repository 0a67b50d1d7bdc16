#include "core/engine/model/hooks.h"

#include <ATen/ATen.h>

namespace lensd::engine {

Hooks::Hooks(int64_t num_layers)
    : num_layers_(num_layers),
      slots_(static_cast<size_t>(kNumGlobalHooks + num_layers * kNumBlockHooks)) {}

size_t Hooks::Index(HookPoint point) const {
  const int kind = static_cast<int>(point.kind);
  if (point.is_global()) return static_cast<size_t>(kind);
  return static_cast<size_t>(kNumGlobalHooks + point.layer * kNumBlockHooks +
                             (kind - kNumGlobalHooks));
}

Hooks::Slot& Hooks::At(HookPoint point) {
  Slot& slot = slots_[Index(point)];
  slot.active = true;
  return slot;
}

void Hooks::Capture(HookPoint point) {
  Slot& slot = At(point);
  if (!slot.capture) capture_order_.push_back(point);
  slot.capture = true;
}

void Hooks::CaptureGrad(HookPoint point) {
  At(point).grad = true;
  needs_grad_ = true;
}

void Hooks::Edit(HookPoint point, EditFn fn) {
  At(point).edits.push_back(
      [fn = std::move(fn)](const at::Tensor& value, int64_t /*offset*/) { return fn(value); });
}

void Hooks::Edit(HookPoint point, PositionedEditFn fn) { At(point).edits.push_back(std::move(fn)); }

void Hooks::Overwrite(HookPoint point, at::Tensor value) {
  Edit(point, [value = std::move(value)](const at::Tensor& x) {
    return value.to(x.options()).expand_as(x).clone();
  });
}

void Hooks::Add(HookPoint point, at::Tensor delta) {
  Edit(point,
       [delta = std::move(delta)](const at::Tensor& x) { return x + delta.to(x.options()); });
}

at::Tensor Hooks::Run(HookPoint point, at::Tensor value) {
  if (!Wants(point)) return value;
  Slot& slot = slots_[Index(point)];
  for (const PositionedEditFn& edit : slot.edits) value = edit(value, offset_);
  if (slot.grad) {
    // d/d(value) equals d/d(leaf) for value + leaf with leaf = 0; upstream gradients still flow.
    slot.grad_leaf = at::zeros_like(value).requires_grad_(true);
    value = value + slot.grad_leaf;
  }
  if (slot.capture) slot.value = slot.grad ? value : value.detach();
  return value;
}

const at::Tensor& Hooks::Captured(HookPoint point) const {
  static const at::Tensor kUndefined;
  if (slots_.empty()) return kUndefined;
  return slots_[Index(point)].value;
}

at::Tensor Hooks::Grad(HookPoint point) const {
  const Slot& slot = slots_[Index(point)];
  if (!slot.grad_leaf.defined()) return at::Tensor();
  return slot.grad_leaf.grad();
}

}  // namespace lensd::engine
