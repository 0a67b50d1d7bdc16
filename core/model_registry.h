// The models a server holds: the repository's folders, which of them are loaded, their lenses,
// tokenizers and work queues, and the device memory they take (MemoryBudget).
//
// Repository layout (ARCHITECTURE.md): <repository>/<model>/{config.json, *.safetensors,
// tokenizer.json}, <repository>/<model>/lenses/<lens>/{config.json, params.pt} and
// <repository>/<model>/saes/<sae>/{cfg.json, sae_weights.safetensors or sae.safetensors}.
//
// Thread-safe. Load and Unload block (they load weights, or wait for queued work): call them from
// a thread that may block, never from a gRPC thread.
#ifndef LENSD_CORE_MODEL_REGISTRY_H_
#define LENSD_CORE_MODEL_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/memory_budget.h"
#include "core/scheduler.h"
#include "core/served_model.h"
#include "core/tokenizer/tokenizer.h"

namespace lensd {

enum class ModelState { kAvailable, kLoading, kReady, kUnloading, kFailed };

// A loaded model: immutable once published; shared by the requests that use it. A handle keeps
// everything it names alive (weights, tokenizer, work queue) however the model is unloaded
// meanwhile: work submitted after an unload is refused with UNAVAILABLE, never run on freed
// memory.
struct LoadedModel {
  std::string name;
  std::string device;
  std::shared_ptr<const ServedModel> model;               // lens loads go through the registry
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;  // null without tokenizer.json
  std::unique_ptr<Scheduler> scheduler;                   // closed by Unload before it lets go
};

struct ModelStatus {
  std::string name;
  ModelState state = ModelState::kAvailable;
  std::string reason;                         // the load error for kFailed
  std::shared_ptr<const LoadedModel> loaded;  // set when kReady
  std::vector<LensDescription> lenses;
  std::vector<std::string> available_lenses;  // folders under <model>/lenses/
  std::vector<SaeDescription> saes;
  std::vector<std::string> available_saes;  // folders under <model>/saes/
  int64_t queue_depth = 0;
};

// A device's memory as its allocator sees it now, in bytes (zeros where unknown).
struct DeviceMemoryReading {
  int64_t total = 0;      // physical memory of the device
  int64_t free = 0;       // free on the device (all processes)
  int64_t allocated = 0;  // held by this process's live tensors (CUDA caching allocator)
  int64_t reserved = 0;   // held by this process's allocator, cache included
};

// How the registry makes models (core/engine/served/engine_factory.h in the server), kept out of
// core.
struct ModelFactory {
  std::function<absl::StatusOr<int64_t>(const std::string& dir, const ServedModelOptions&)>
      estimate_bytes;
  std::function<absl::StatusOr<std::unique_ptr<ServedModel>>(const std::string& dir,
                                                             const ServedModelOptions&)>
      load;
  std::function<absl::StatusOr<std::string>(const std::string& device)> canonical_device;
  std::function<void()> release_memory;
  std::function<DeviceMemoryReading(const std::string& device)> device_memory;  // may be empty
  // SchedulerOptions::yield_scope for every model's scheduler (may be empty).
  std::function<std::shared_ptr<void>()> yield_scope;
};

struct RegistryOptions {
  std::string repository;
  std::map<std::string, int64_t> budgets;  // device -> bytes
  SchedulerOptions scheduler;
};

class ModelRegistry {
 public:
  // INVALID_ARGUMENT when the repository is not a readable folder.
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Create(RegistryOptions options,
                                                               ModelFactory factory,
                                                               SchedulerObserver* observer);
  ~ModelRegistry();  // drains every model

  // Loads <repository>/<name>. NOT_FOUND (listing what the repository has), ALREADY_EXISTS,
  // UNAVAILABLE while it loads or unloads, RESOURCE_EXHAUSTED over the device budget, the
  // engine's errors on reading the folder (config.json, weights, tokenizer.json: the model is
  // then FAILED with the reason).
  absl::StatusOr<ModelStatus> Load(const std::string& name, const ServedModelOptions& options);
  // Stops new work, refuses queued work (UNAVAILABLE), waits for running batches and for the
  // handles requests still hold (up to `handle_wait`), frees the memory. Returns the bytes freed.
  absl::StatusOr<int64_t> Unload(const std::string& name,
                                 absl::Duration handle_wait = absl::Seconds(30));
  absl::StatusOr<LensDescription> LoadLens(const std::string& model, const std::string& lens);
  absl::StatusOr<int64_t> UnloadLens(const std::string& model, const std::string& lens);
  // Attaches <repository>/<model>/saes/<sae>. NOT_FOUND (listing the folder), RESOURCE_EXHAUSTED
  // over the device budget, the engine's errors.
  absl::StatusOr<SaeDescription> LoadSae(const std::string& model, const std::string& sae,
                                         const SaeLoadOptions& options);
  absl::StatusOr<int64_t> UnloadSae(const std::string& model, const std::string& sae);

  // A ready model. NOT_FOUND for a name the repository lacks; FAILED_PRECONDITION when it is not
  // loaded; UNAVAILABLE while it loads or unloads.
  absl::StatusOr<std::shared_ptr<const LoadedModel>> Get(const std::string& name) const;
  absl::StatusOr<ModelStatus> Status(const std::string& name) const;
  std::vector<ModelStatus> List() const;
  std::vector<MemoryBudget::Device> Devices() const { return budget_.Devices(); }
  // What the device's allocator holds now (zeros when the factory cannot tell).
  DeviceMemoryReading DeviceMemory(const std::string& device) const {
    return factory_.device_memory ? factory_.device_memory(device) : DeviceMemoryReading{};
  }
  // Whether every model in `names` is ready.
  bool AllReady(const std::vector<std::string>& names) const;

 private:
  struct Slot {
    ModelState state = ModelState::kAvailable;
    std::string reason;
    std::shared_ptr<const LoadedModel> loaded;
    std::shared_ptr<ServedModel> model;  // the mutable handle (lens loads)
    int64_t weight_bytes = 0;
    std::map<std::string, int64_t> lens_bytes;
    std::map<std::string, int64_t> sae_bytes;
  };
  // What LoadLens and LoadSae share: the folder <model>/<kind>/<name> checked, its bytes reserved
  // on the model's device while `load` runs, and kept in the slot's `bytes` map on success.
  template <typename Description>
  absl::StatusOr<Description> LoadAttachment(
      const std::string& model, const std::string& kind, const std::string& name,
      std::map<std::string, int64_t> Slot::*bytes,
      const std::function<absl::StatusOr<int64_t>(ServedModel&, const std::string&)>& estimate,
      const std::function<absl::StatusOr<Description>(ServedModel&, const std::string&)>& load);

  ModelRegistry(RegistryOptions options, ModelFactory factory, SchedulerObserver* observer);
  std::vector<std::string> RepositoryModels() const;
  // A load that failed on the model's own files: FAILED with the reason (unless another load or
  // an unload owns the slot now).
  void MarkFailed(const std::string& name, const absl::Status& status);
  absl::Status CheckName(const std::string& name, const char* field) const;
  // Logs each link under `dir` whose target is outside the repository (they are followed: the
  // repository is the admin's; clients only name folders in it).
  void FlagLinksOutside(const std::string& dir) const;
  ModelStatus Describe(const std::string& name, const Slot* slot) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const RegistryOptions options_;
  const ModelFactory factory_;
  SchedulerObserver* const observer_;
  MemoryBudget budget_;
  mutable absl::Mutex mu_;
  std::map<std::string, Slot> slots_ ABSL_GUARDED_BY(mu_);
};

const char* ModelStateName(ModelState state);

}  // namespace lensd

#endif  // LENSD_CORE_MODEL_REGISTRY_H_
