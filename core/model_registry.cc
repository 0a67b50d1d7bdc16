#include "core/model_registry.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/log_status.h"
#include "core/shown_text.h"
#include "core/status_macros.h"

namespace lensd {
namespace fs = std::filesystem;

const char* ModelStateName(ModelState state) {
  switch (state) {
    case ModelState::kAvailable:
      return "available";
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "ready";
    case ModelState::kUnloading:
      return "unloading";
    case ModelState::kFailed:
      return "failed";
  }
  return "unknown";
}

namespace {

std::vector<std::string> SubFolders(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) out.push_back(it->path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Create(RegistryOptions options,
                                                                     ModelFactory factory,
                                                                     SchedulerObserver* observer) {
  std::error_code ec;
  if (!fs::is_directory(options.repository, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model repository ", options.repository, " is not a folder"));
  }
  return std::unique_ptr<ModelRegistry>(
      new ModelRegistry(std::move(options), std::move(factory), observer));
}

ModelRegistry::ModelRegistry(RegistryOptions options, ModelFactory factory,
                             SchedulerObserver* observer)
    : options_(std::move(options)),
      factory_(std::move(factory)),
      observer_(observer),
      budget_(options_.budgets) {}

ModelRegistry::~ModelRegistry() {
  absl::MutexLock lock(&mu_);
  for (auto& [name, slot] : slots_) {
    if (slot.loaded != nullptr) slot.loaded->scheduler->Drain();
  }
}

std::vector<std::string> ModelRegistry::RepositoryModels() const {
  std::vector<std::string> out;
  for (const std::string& name : SubFolders(options_.repository)) {
    std::error_code ec;
    if (fs::exists(fs::path(options_.repository) / name / "config.json", ec)) out.push_back(name);
  }
  return out;
}

absl::Status ModelRegistry::CheckName(const std::string& name, const char* field) const {
  const bool control = std::any_of(name.begin(), name.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x20; });
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\\') != std::string::npos || control || name.size() > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", absl::CHexEscape(ShownName(name)),
                     "\" is not a folder name (1..255 bytes, no slashes, NUL or control "
                     "characters)"));
  }
  return absl::OkStatus();
}

void ModelRegistry::FlagLinksOutside(const std::string& dir) const {
  std::error_code ec;
  const fs::path root = fs::canonical(options_.repository, ec);
  if (ec) return;
  for (const auto& entry :
       fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink, ec)) {
    std::error_code link_ec;
    if (!entry.is_symlink(link_ec)) continue;
    const fs::path target = fs::canonical(entry.path(), link_ec);
    const auto [end, _] = std::mismatch(root.begin(), root.end(), target.begin(), target.end());
    if (link_ec || end == root.end()) continue;
    LogIfError(absl::FailedPreconditionError(absl::StrCat(
                   entry.path().string(), " links to ", target.string(),
                   ", outside the model repository (followed: the repository is the admin's)")),
               "model repository");
  }
}

absl::StatusOr<ModelStatus> ModelRegistry::Load(const std::string& name,
                                                const ServedModelOptions& requested) {
  LENSD_RETURN_IF_ERROR(CheckName(name, "model"));
  const std::vector<std::string> known = RepositoryModels();
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    return absl::NotFoundError(absl::StrCat("model ", name, " is not in the repository ",
                                            options_.repository,
                                            " (it has: ", absl::StrJoin(known, ", "), ")"));
  }
  ServedModelOptions options = requested;
  if (options.device.empty()) options.device = "cpu";
  if (options.dtype.empty()) options.dtype = "float32";
  LENSD_ASSIGN_OR_RETURN(options.device, factory_.canonical_device(options.device));
  // The request's own fields first: what fails after this is the model's (FAILED, with why).
  constexpr std::array<absl::string_view, 7> kDtypes = {"float32", "fp32", "bfloat16", "bf16",
                                                        "float16", "fp16", "auto"};
  if (std::find(kDtypes.begin(), kDtypes.end(), options.dtype) == kDtypes.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype: \"", options.dtype, "\" is not one of float32, bfloat16, float16, auto"));
  }
  const std::string dir = (fs::path(options_.repository) / name).string();
  FlagLinksOutside(dir);
  const absl::StatusOr<int64_t> estimated = factory_.estimate_bytes(dir, options);
  if (!estimated.ok()) {
    MarkFailed(name, estimated.status());
    return estimated.status();
  }
  const int64_t estimate = *estimated;
  {
    absl::MutexLock lock(&mu_);
    Slot& slot = slots_[name];
    if (slot.state == ModelState::kReady) {
      return absl::AlreadyExistsError(absl::StrCat("model ", name, " is already loaded"));
    }
    if (slot.state == ModelState::kLoading || slot.state == ModelState::kUnloading) {
      return absl::UnavailableError(
          absl::StrCat("model ", name, " is ", ModelStateName(slot.state), "; retry shortly"));
    }
    LENSD_RETURN_IF_ERROR(
        budget_.Reserve(options.device, estimate, absl::StrCat("loading model ", name)));
    slot.state = ModelState::kLoading;
    slot.reason.clear();
  }
  absl::StatusOr<std::unique_ptr<ServedModel>> model = factory_.load(dir, options);
  std::shared_ptr<const tokenizer::Tokenizer> tok;
  std::error_code ec;
  const fs::path tokenizer_path = fs::path(dir) / "tokenizer.json";
  if (model.ok() && fs::exists(tokenizer_path, ec)) {
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> t =
        tokenizer::Tokenizer::FromFile(tokenizer_path.string());
    if (t.ok()) {
      tok = *std::move(t);
    } else {
      model = t.status();
    }
  }
  absl::MutexLock lock(&mu_);
  Slot& slot = slots_[name];
  if (!model.ok()) {
    budget_.Release(options.device, estimate);
    slot.state = ModelState::kFailed;
    slot.reason = std::string(model.status().message());
    return model.status();
  }
  slot.model = *std::move(model);
  // Count what the load really took; the estimate only guarded the budget during the load.
  slot.weight_bytes = slot.model->info().parameter_bytes;
  budget_.Release(options.device, estimate);
  budget_.Charge(options.device, slot.weight_bytes);
  auto loaded = std::make_shared<LoadedModel>();
  loaded->name = name;
  loaded->device = options.device;
  loaded->model = slot.model;
  loaded->tokenizer = std::move(tok);
  SchedulerOptions scheduler = options_.scheduler;
  scheduler.yield_scope = factory_.yield_scope;
  loaded->scheduler = std::make_unique<Scheduler>(name, std::move(scheduler), observer_);
  slot.loaded = std::move(loaded);
  slot.state = ModelState::kReady;
  return Describe(name, &slot);
}

void ModelRegistry::MarkFailed(const std::string& name, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  Slot& slot = slots_[name];
  if (slot.state != ModelState::kAvailable && slot.state != ModelState::kFailed) return;
  slot.state = ModelState::kFailed;
  slot.reason = std::string(status.message());
}

absl::StatusOr<int64_t> ModelRegistry::Unload(const std::string& name, absl::Duration handle_wait) {
  LENSD_RETURN_IF_ERROR(Get(name).status());
  std::shared_ptr<const LoadedModel> loaded;
  {
    absl::MutexLock lock(&mu_);
    Slot& slot = slots_[name];
    if (slot.state != ModelState::kReady) {
      return absl::UnavailableError(
          absl::StrCat("model ", name, " is ", ModelStateName(slot.state), "; retry shortly"));
    }
    slot.state = ModelState::kUnloading;
    loaded = slot.loaded;
  }
  // Running batches finish; queued and new work is refused meanwhile.
  loaded->scheduler->Close(absl::UnavailableError(
      absl::StrCat("model ", name, " was unloaded before this request ran; load it again")));
  const std::weak_ptr<const ServedModel> weights = loaded->model;
  const std::string device = loaded->device;
  loaded.reset();
  int64_t freed = 0;
  {
    absl::MutexLock lock(&mu_);
    Slot& slot = slots_[name];
    freed = slot.weight_bytes;
    for (const auto& [lens, bytes] : slot.lens_bytes) freed += bytes;
    for (const auto& [sae, bytes] : slot.sae_bytes) freed += bytes;
    slots_.erase(name);
  }
  // Requests that took a handle before the unload (tokenizing, or refused by the closed queue)
  // let go within moments; the budget is released once the weights are really gone.
  const absl::Time until = absl::Now() + handle_wait;
  while (!weights.expired() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  budget_.Release(device, freed);
  factory_.release_memory();
  return freed;
}

template <typename Description>
absl::StatusOr<Description> ModelRegistry::LoadAttachment(
    const std::string& model, const std::string& kind, const std::string& name,
    std::map<std::string, int64_t> Slot::*bytes,
    const std::function<absl::StatusOr<int64_t>(ServedModel&, const std::string&)>& estimate,
    const std::function<absl::StatusOr<Description>(ServedModel&, const std::string&)>& load) {
  const std::string field = kind == "lenses" ? "lens" : "sae";
  LENSD_RETURN_IF_ERROR(CheckName(name, field.c_str()));
  LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> loaded, Get(model));
  std::shared_ptr<ServedModel> handle;
  {
    absl::MutexLock lock(&mu_);
    handle = slots_[model].model;
  }
  const std::string dir = (fs::path(options_.repository) / model / kind / name).string();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(
        field, " ", name, " is not in ", model, "/", kind,
        "/ (it has: ", absl::StrJoin(SubFolders(fs::path(dir).parent_path()), ", "), ")"));
  }
  LENSD_ASSIGN_OR_RETURN(const int64_t reserved, estimate(*handle, dir));
  LENSD_RETURN_IF_ERROR(budget_.Reserve(loaded->device, reserved,
                                        absl::StrCat("loading ", field, " ", name, " of ", model)));
  absl::StatusOr<Description> description = load(*handle, dir);
  if (!description.ok()) {
    budget_.Release(loaded->device, reserved);
    return description.status();
  }
  absl::MutexLock lock(&mu_);
  (slots_[model].*bytes)[name] = reserved;
  return description;
}

absl::StatusOr<LensDescription> ModelRegistry::LoadLens(const std::string& model,
                                                        const std::string& lens) {
  return LoadAttachment<LensDescription>(
      model, "lenses", lens, &Slot::lens_bytes,
      [](ServedModel& m, const std::string& dir) { return m.EstimateLensBytes(dir); },
      [&lens](ServedModel& m, const std::string& dir) { return m.LoadLens(lens, dir); });
}

absl::StatusOr<SaeDescription> ModelRegistry::LoadSae(const std::string& model,
                                                      const std::string& sae,
                                                      const SaeLoadOptions& options) {
  return LoadAttachment<SaeDescription>(
      model, "saes", sae, &Slot::sae_bytes,
      [&options](ServedModel& m, const std::string& dir) {
        return m.EstimateSaeBytes(dir, options);
      },
      [&sae, &options](ServedModel& m, const std::string& dir) {
        return m.LoadSae(sae, dir, options);
      });
}

absl::StatusOr<int64_t> ModelRegistry::UnloadLens(const std::string& model,
                                                  const std::string& lens) {
  LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> loaded, Get(model));
  absl::MutexLock lock(&mu_);
  Slot& slot = slots_[model];
  LENSD_ASSIGN_OR_RETURN(const int64_t freed, slot.model->UnloadLens(lens));
  budget_.Release(loaded->device, slot.lens_bytes[lens]);
  slot.lens_bytes.erase(lens);
  return freed;
}

absl::StatusOr<int64_t> ModelRegistry::UnloadSae(const std::string& model, const std::string& sae) {
  LENSD_ASSIGN_OR_RETURN(const std::shared_ptr<const LoadedModel> loaded, Get(model));
  absl::MutexLock lock(&mu_);
  Slot& slot = slots_[model];
  LENSD_ASSIGN_OR_RETURN(const int64_t freed, slot.model->UnloadSae(sae));
  budget_.Release(loaded->device, slot.sae_bytes[sae]);
  slot.sae_bytes.erase(sae);
  return freed;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelRegistry::Get(
    const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  const auto it = slots_.find(name);
  if (it != slots_.end() && it->second.state == ModelState::kReady) return it->second.loaded;
  if (it != slots_.end() &&
      (it->second.state == ModelState::kLoading || it->second.state == ModelState::kUnloading)) {
    return absl::UnavailableError(absl::StrCat(
        "model ", ShownName(name), " is ", ModelStateName(it->second.state), "; retry shortly"));
  }
  const std::vector<std::string> known = RepositoryModels();
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    return absl::NotFoundError(
        absl::StrCat("model ", ShownName(name),
                     " is not in the repository (it has: ", absl::StrJoin(known, ", "), ")"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("model ", name, " is not loaded; an admin can load it with LoadModel",
                   it != slots_.end() && !it->second.reason.empty()
                       ? absl::StrCat(" (the last load failed: ", it->second.reason, ")")
                       : ""));
}

ModelStatus ModelRegistry::Describe(const std::string& name, const Slot* slot) const {
  ModelStatus s;
  s.name = name;
  s.available_lenses = SubFolders(fs::path(options_.repository) / name / "lenses");
  s.available_saes = SubFolders(fs::path(options_.repository) / name / "saes");
  if (slot == nullptr) return s;
  s.state = slot->state;
  s.reason = slot->reason;
  if (slot->state == ModelState::kReady) {
    s.loaded = slot->loaded;
    s.lenses = slot->model->Lenses();
    s.saes = slot->model->Saes();
    s.queue_depth = slot->loaded->scheduler->depth();
  }
  return s;
}

absl::StatusOr<ModelStatus> ModelRegistry::Status(const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  const auto it = slots_.find(name);
  if (it != slots_.end()) return Describe(name, &it->second);
  const std::vector<std::string> known = RepositoryModels();
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    return absl::NotFoundError(
        absl::StrCat("model ", ShownName(name),
                     " is not in the repository (it has: ", absl::StrJoin(known, ", "), ")"));
  }
  return Describe(name, nullptr);
}

std::vector<ModelStatus> ModelRegistry::List() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> names = RepositoryModels();
  for (const auto& [name, slot] : slots_) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::vector<ModelStatus> out;
  for (const std::string& name : names) {
    const auto it = slots_.find(name);
    out.push_back(Describe(name, it == slots_.end() ? nullptr : &it->second));
  }
  return out;
}

bool ModelRegistry::AllReady(const std::vector<std::string>& names) const {
  absl::ReaderMutexLock lock(&mu_);
  for (const std::string& name : names) {
    const auto it = slots_.find(name);
    if (it == slots_.end() || it->second.state != ModelState::kReady) return false;
  }
  return true;
}

}  // namespace lensd
