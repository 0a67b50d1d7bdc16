// Per-request capture points of one forward pass: capture a value, edit it (overwrite, add, or
// any function), or capture the gradient of a later scalar with respect to it. The model calls
// Run at every point; a point nobody registered costs one table lookup.
// Not thread-safe: one Hooks object belongs to one request.
#ifndef LENSD_CORE_ENGINE_MODEL_HOOKS_H_
#define LENSD_CORE_ENGINE_MODEL_HOOKS_H_

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "core/engine/model/hook_names.h"

namespace lensd::engine {

class Hooks {
 public:
  // Receives the value at the point and returns the value the pass continues with.
  using EditFn = std::function<at::Tensor(const at::Tensor& value)>;
  // The same, also given the sequence position of the value's first column (the columns earlier
  // calls left in a KV cache): edits of given positions during incremental decoding.
  using PositionedEditFn = std::function<at::Tensor(const at::Tensor& value, int64_t offset)>;

  explicit Hooks(int64_t num_layers);

  // Keeps the value (after edits) for Captured().
  void Capture(HookPoint point);
  // Makes Grad() available after the caller runs backward on a scalar computed from the outputs.
  // A forward with any gradient point runs with autograd enabled.
  void CaptureGrad(HookPoint point);
  // Edits run in the order added, before capture.
  void Edit(HookPoint point, EditFn fn);
  void Edit(HookPoint point, PositionedEditFn fn);
  // Replaces the value by `value` (broadcast to the point's shape, cast to its dtype and device).
  void Overwrite(HookPoint point, at::Tensor value);
  // Adds `delta` (broadcast, cast) to the value.
  void Add(HookPoint point, at::Tensor delta);

  bool Wants(HookPoint point) const { return !slots_.empty() && slots_[Index(point)].active; }
  bool needs_grad() const { return needs_grad_; }
  // Set by the model at the start of each forward call: the position of its first column.
  void set_offset(int64_t offset) { offset_ = offset; }

  // Called by the model: applies edits, records the capture, inserts the gradient leaf.
  at::Tensor Run(HookPoint point, at::Tensor value);

  // The captured value; undefined if not captured or the point was not reached.
  const at::Tensor& Captured(HookPoint point) const;
  // d(scalar)/d(value at point), after backward; undefined before.
  at::Tensor Grad(HookPoint point) const;
  // Points registered for capture, in registration order.
  const std::vector<HookPoint>& captures() const { return capture_order_; }

 private:
  struct Slot {
    bool active = false;
    bool capture = false;
    bool grad = false;
    std::vector<PositionedEditFn> edits;
    at::Tensor value;
    at::Tensor grad_leaf;
  };
  size_t Index(HookPoint point) const;
  Slot& At(HookPoint point);

  int64_t num_layers_;
  std::vector<Slot> slots_;
  std::vector<HookPoint> capture_order_;
  bool needs_grad_ = false;
  int64_t offset_ = 0;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_HOOKS_H_
