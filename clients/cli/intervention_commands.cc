// lensctl's interventions: --steer and --ablate on decode and generate (and activations), and the
// `patch` command (an ActivationPatching sweep printed as a grid per sweep).
//
//   --steer 'HOOK@FILE*COEF;...'   add COEF (default 1) x the vector in FILE (a JSON array of
//                                  numbers, or raw little-endian float32) at HOOK
//   --ablate 'HOOK[:HEADS];...'    zero-ablate HOOK (HEADS: comma-separated, for per-head hooks
//                                  such as blocks.3.attn.hook_z)
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "clients/cli/commands.h"
#include "clients/cli/output.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/training.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace lensctl {
namespace v1 = lensd::v1;
namespace {

// The floats of FILE: a JSON array, or raw little-endian float32.
bool ReadVector(const std::string& path, std::vector<float>* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return *error = absl::StrCat(path, ": cannot be read"), false;
  std::stringstream bytes;
  bytes << in.rdbuf();
  const std::string data = bytes.str();
  const auto first = data.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && data[first] == '[') {
    const nlohmann::json values = nlohmann::json::parse(data, nullptr, false);
    if (!values.is_array()) return *error = absl::StrCat(path, ": not a JSON array"), false;
    for (const auto& v : values) {
      if (!v.is_number()) return *error = absl::StrCat(path, ": holds a non-number"), false;
      out->push_back(v.get<float>());
    }
    return true;
  }
  if (data.empty() || data.size() % sizeof(float) != 0) {
    return *error = absl::StrCat(path, ": neither a JSON array nor raw float32 bytes"), false;
  }
  out->resize(data.size() / sizeof(float));
  std::memcpy(out->data(), data.data(), data.size());
  return true;
}

bool AddSteer(absl::string_view item, v1::Intervention* edit, std::string* error) {
  const std::vector<std::string> at = absl::StrSplit(item, '@');
  if (at.size() != 2 || at[0].empty()) {
    return *error = absl::StrCat("--steer: \"", item, "\" is not HOOK@FILE[*COEF]"), false;
  }
  std::vector<std::string> file = absl::StrSplit(at[1], '*');
  double coefficient = 1;
  if (file.size() > 2 || (file.size() == 2 && !absl::SimpleAtod(file[1], &coefficient))) {
    return *error = absl::StrCat("--steer: \"", item, "\": COEF must be a number"), false;
  }
  std::vector<float> vector;
  if (!ReadVector(file[0], &vector, error)) return *error = "--steer: " + *error, false;
  edit->set_hook_point(at[0]);
  v1::Tensor* t = edit->mutable_add()->mutable_vector();
  t->set_dtype("float32");
  t->add_shape(static_cast<int64_t>(vector.size()));
  t->set_data(
      std::string(reinterpret_cast<const char*>(vector.data()), vector.size() * sizeof(float)));
  edit->mutable_add()->set_coefficient(coefficient);
  return true;
}

bool AddAblate(absl::string_view item, v1::Intervention* edit, std::string* error) {
  const std::vector<std::string> parts = absl::StrSplit(item, absl::MaxSplits(':', 1));
  edit->set_hook_point(parts[0]);
  edit->set_zero(true);
  if (parts.size() == 2) {
    for (absl::string_view h : absl::StrSplit(parts[1], ',', absl::SkipEmpty())) {
      int64_t head = 0;
      if (!absl::SimpleAtoi(h, &head)) {
        return *error = absl::StrCat("--ablate: \"", item, "\": heads are integers"), false;
      }
      edit->add_heads(head);
    }
  }
  return !parts[0].empty() || (*error = "--ablate: give HOOK[:HEADS]", false);
}

// The sweep as a durable job (train role): prints its id; `lensctl watch` follows it and
// `lensctl job` prints its grids.
int SubmitPatchingJob(const Connection& c, v1::ActivationPatchingRequest sweep) {
  v1::SubmitJobRequest q;
  q.set_model(sweep.model());
  sweep.clear_model();
  *q.mutable_activation_patching() = std::move(sweep);
  v1::Job job;
  const grpc::Status s = v1::Training::NewStub(c.channel)->SubmitJob(c.Context().get(), q, &job);
  if (!s.ok()) return Fail(s);
  std::cout << "submitted " << job.id() << " (" << job.num_steps()
            << " patched runs); lensctl watch " << job.id() << " follows it, lensctl job "
            << job.id() << " prints its grids\n";
  return 0;
}

int Patch(const Connection& c, const Parsed& p) {
  v1::ActivationPatchingRequest q;
  q.set_model(p.Get("model"));
  q.mutable_clean()->set_text(p.Get("clean"));
  q.mutable_corrupted()->set_text(p.Get("corrupted"));
  if (p.Get("clean").empty() || p.Get("corrupted").empty()) {
    return Usage("--clean and --corrupted: give both texts");
  }
  int64_t target = -1, foil = -1;
  if (!absl::SimpleAtoi(p.Get("target"), &target) || !absl::SimpleAtoi(p.Get("foil"), &foil)) {
    return Usage("--target and --foil are token ids");
  }
  q.mutable_metric()->set_kind(foil >= 0 ? v1::METRIC_KIND_LOGIT_DIFF : v1::METRIC_KIND_LOGIT);
  if (target >= 0) q.mutable_metric()->set_target(target);
  if (foil >= 0) q.mutable_metric()->set_foil(foil);
  if (p.Flag("noising")) q.set_direction(v1::PATCHING_DIRECTION_NOISING);
  static const std::map<std::string, v1::PatchingSite> kSites = {
      {"resid_pre", v1::PATCHING_SITE_RESID_PRE},
      {"resid_mid", v1::PATCHING_SITE_RESID_MID},
      {"resid_post", v1::PATCHING_SITE_RESID_POST},
      {"attn_out", v1::PATCHING_SITE_ATTN_OUT},
      {"mlp_out", v1::PATCHING_SITE_MLP_OUT},
      {"z", v1::PATCHING_SITE_Z},
      {"q", v1::PATCHING_SITE_Q},
      {"k", v1::PATCHING_SITE_K},
      {"v", v1::PATCHING_SITE_V},
      {"pattern", v1::PATCHING_SITE_PATTERN}};
  for (absl::string_view name : absl::StrSplit(p.Get("sweeps"), ',', absl::SkipEmpty())) {
    const bool all = absl::ConsumeSuffix(&name, "_all_pos");
    const auto it = kSites.find(std::string(name));
    if (it == kSites.end()) return Usage(absl::StrCat("--sweeps: unknown site \"", name, "\""));
    v1::PatchingSweep* sweep = q.add_sweeps();
    sweep->set_site(it->second);
    sweep->set_all_positions(all);
  }
  if (p.Flag("job")) return SubmitPatchingJob(c, q);
  auto context = c.Context();
  auto reader = v1::Lens::NewStub(c.channel)->ActivationPatching(context.get(), q);
  v1::ActivationPatchingResponse message;
  v1::ActivationPatchingResult result;
  while (reader->Read(&message)) {
    if (message.has_progress()) {
      std::cerr << "\r" << message.progress().done() << "/" << message.progress().total()
                << " patched runs" << std::flush;
    } else {
      result = message.result();
    }
  }
  std::cerr << "\n";
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  if (p.Flag("json")) {
    std::cout << JsonOf(result) << "\n";
    return 0;
  }
  std::cout << PatchingTables(result);
  return 0;
}

}  // namespace

std::vector<OptionSpec> InterventionOptions() {
  return {
      {"steer", "HOOK@FILE[*COEF];...: add COEF x the vector in FILE (JSON array or float32)", ""},
      {"ablate", "HOOK[:HEADS];...: zero-ablate a hook point (or heads of a per-head one)", ""}};
}

bool AddInterventions(const Parsed& p,
                      google::protobuf::RepeatedPtrField<v1::Intervention>* interventions,
                      std::string* error) {
  for (absl::string_view item : absl::StrSplit(p.Get("steer"), ';', absl::SkipEmpty())) {
    if (!AddSteer(item, interventions->Add(), error)) return false;
  }
  for (absl::string_view item : absl::StrSplit(p.Get("ablate"), ';', absl::SkipEmpty())) {
    if (!AddAblate(item, interventions->Add(), error)) return false;
  }
  return true;
}

std::vector<CommandEntry> InterventionCommands() {
  return {{{"patch",
            "activation patching: which layers and positions carry the clean behaviour",
            "",
            {{"model", "model name (lensctl models lists them)", "kjv-gpt2"},
             {"clean", "the clean text", ""},
             {"corrupted", "the corrupted text (as many tokens)", ""},
             {"target",
              "metric: logit(target) (- logit(foil)) at the last position; -1: the "
              "clean run's top-1",
              "-1"},
             {"foil", "the foil token id (-1: none)", "-1"},
             {"sweeps",
              "comma-separated: resid_pre, resid_mid, resid_post, attn_out, mlp_out, "
              "z, q, k, v, pattern (by position), <site>_all_pos",
              "resid_pre"},
             {"noising", "patch corrupted values into the clean run", "false", true},
             {"job", "run it as a durable job (train role) and print its id", "false", true},
             {"json", "print the result as JSON", "false", true}}},
           Patch}};
}

}  // namespace lensctl
