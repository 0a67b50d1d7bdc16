// A DecodingModel whose answers a test can recompute without a model (FakeDecoding::Expected):
// the cell of row r at position p holds top ids (tokens[p] + 3r + j) mod vocab with probabilities
// 2^-(j+1), entropy r + p/100 and max probability 1/2; generation appends (last + 1) mod vocab.
// It counts decode batches and the largest one, and can hold every forward pass until released
// (to keep work in flight while a test unloads or floods).
#ifndef LENSD_SERVER_TESTING_FAKE_DECODING_H_
#define LENSD_SERVER_TESTING_FAKE_DECODING_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/served_model.h"

namespace lensd::server::testing {

class FakeDecoding : public DecodingModel {
 public:
  explicit FakeDecoding(ServedModelInfo info) : info_(std::move(info)) {}

  // What Decode answers for `spec` run alone.
  static DecodeOutput Expected(const DecodeSpec& spec, const ServedModelInfo& info);

  absl::StatusOr<std::vector<DecodeOutput>> Decode(absl::Span<const DecodeSpec* const> batch,
                                                   const KeepGoing& keep_going,
                                                   const HostLogProbSink& sink) const override;
  // Layers beyond the model: INVALID_ARGUMENT "layers: ..."; a lens other than "logit": NOT_FOUND.
  absl::Status ValidateDecode(const DecodeSpec& spec) const override;
  absl::StatusOr<GenerateOutput> Generate(
      const GenerateSpec& spec,
      const std::function<absl::Status(int64_t, int64_t)>& on_token) const override;

  // Forward passes wait until Release() while held.
  void Hold();
  void Release();
  // Forward passes now waiting in Hold.
  int waiting() const { return waiting_.load(); }
  int64_t batches() const { return batches_.load(); }
  int64_t requests() const { return requests_.load(); }
  int largest_batch() const { return largest_batch_.load(); }

 private:
  void WaitWhileHeld() const;

  ServedModelInfo info_;
  mutable absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  mutable std::atomic<int> waiting_{0};
  mutable std::atomic<int64_t> batches_{0};
  mutable std::atomic<int64_t> requests_{0};
  mutable std::atomic<int> largest_batch_{0};
};

}  // namespace lensd::server::testing

#endif  // LENSD_SERVER_TESTING_FAKE_DECODING_H_
