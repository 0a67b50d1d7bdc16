// lensd-load-peak: loads a model folder and reports the weights' size and the peak resident
// memory the load added, measured in this fresh process after libtorch's own start-up.
// Output (one line): weights_bytes=<n> peak_added_bytes=<n>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/engine/models/model_loader.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16, float16 or auto");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:<index>");
ABSL_FLAG(std::string, warmup_model, "",
          "a small model folder loaded first, so that libtorch's start-up is not counted");

namespace {

int64_t StatusKb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Loads a model and prints the weights' size and the peak resident memory the load added.\n"
      "  lensd-load-peak --model deploy/models/kjv-gpt2 --dtype float32");
  absl::ParseCommandLine(argc, argv);
  const lensd::engine::LoadOptions options{absl::GetFlag(FLAGS_dtype), absl::GetFlag(FLAGS_device)};
  if (!absl::GetFlag(FLAGS_warmup_model).empty()) {
    auto warm = lensd::engine::LoadModel(absl::GetFlag(FLAGS_warmup_model), options);
    if (!warm.ok()) return std::cerr << warm.status() << "\n", 1;
  }
  std::ofstream("/proc/self/clear_refs") << "5";  // reset the peak (VmHWM)
  const int64_t before_kb = StatusKb("VmRSS");
  auto model = lensd::engine::LoadModel(absl::GetFlag(FLAGS_model), options);
  if (!model.ok()) return std::cerr << model.status() << "\n", 1;
  const int64_t peak_kb = StatusKb("VmHWM");
  std::cout << "weights_bytes=" << (*model)->parameter_bytes()
            << " peak_added_bytes=" << (peak_kb - before_kb) * 1024 << "\n";
  return 0;
}
