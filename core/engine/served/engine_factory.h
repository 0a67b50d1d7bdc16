// The engine's torch-free entry points for the server: load models as ServedModels, estimate
// their size before loading, and give freed memory back. Include this, never other engine
// headers, outside core/engine.
#ifndef LENSD_CORE_ENGINE_SERVED_ENGINE_FACTORY_H_
#define LENSD_CORE_ENGINE_SERVED_ENGINE_FACTORY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_registry.h"
#include "core/served_model.h"

namespace lensd::engine {

// Bytes the weights of the Hugging Face folder `dir` will take on a device in `options.dtype`
// (from config.json and the safetensors headers; nothing is loaded). NOT_FOUND for a folder
// without config.json or weights; INVALID_ARGUMENT naming the file for malformed ones.
absl::StatusOr<int64_t> EstimateModelBytes(const std::string& dir,
                                           const ServedModelOptions& options);

// Loads the folder (errors as models/model_loader.h's LoadModel).
absl::StatusOr<std::unique_ptr<ServedModel>> LoadServedModel(const std::string& dir,
                                                             const ServedModelOptions& options);

// "cpu", "cuda:0", ...: the devices this process can use.
std::vector<std::string> AvailableDevices();
// The canonical name of a device ("cuda" -> "cuda:0"); INVALID_ARGUMENT / FAILED_PRECONDITION as
// ParseDevice.
absl::StatusOr<std::string> CanonicalDevice(const std::string& name);
// Total memory of a device in bytes (physical RAM for "cpu").
int64_t DeviceTotalBytes(const std::string& device);
// The device's memory now: total and free from the driver (the OS for "cpu"), allocated and
// reserved by this process's CUDA caching allocator (zero for "cpu").
DeviceMemoryReading ReadDeviceMemory(const std::string& device);

// What precision "auto" means for lens training on the CPU, set once at start-up: "auto"
// (bfloat16 autocast where the CPU has bfloat16 arithmetic, as tuned-lens's loop runs on a GPU;
// else float32), "float32" or "bfloat16". INVALID_ARGUMENT for another name.
absl::Status SetCpuPrecision(const std::string& name);
// "float32" or "bfloat16": what the setting resolves to on this CPU.
std::string CpuPrecision();

// Sets libtorch's process-wide state once, at start-up: intra-op CPU threads (0 keeps
// libtorch's default, one per core), and the C allocator's thresholds so that large tensors
// freed by one request are reused by the next instead of mapped and zeroed anew.
void ConfigureRuntime(int intra_op_threads);

// Makes libtorch's OpenMP threads sleep between parallel regions instead of spinning: when
// OMP_WAIT_POLICY is unset, sets it to "passive" and re-executes the program with `argv` (libgomp
// reads it once, when it loads, before main). Spinning OpenMP threads fight OpenBLAS's own threads
// and gRPC's for the cores: on 2 cores it made small decodes up to 3x slower. Call first in main;
// returns (doing nothing) when the policy is already set or the re-exec fails.
void UsePassiveOpenMpWaits(char** argv);

// Sets the calling thread's torch state to a new worker thread's (not in inference mode,
// gradients enabled) until the returned object is destroyed; the registry's schedulers call it
// around every batch that a yield runs inside another.
std::shared_ptr<void> EnterFreshThreadState();

// Hands freed host memory back to the operating system and empties the CUDA cache (after an
// unload, so that the memory really leaves the process).
void ReleaseFreedMemory();

// The functions above, as the model registry takes them.
ModelFactory EngineModelFactory();

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_SERVED_ENGINE_FACTORY_H_
