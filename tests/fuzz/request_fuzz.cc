// libFuzzer target: request bytes of every lensd RPC through the server's parse, conversion and
// admission layer (wire_parse, convert, attribution_convert, intervention_convert,
// patching_convert, request_cost), the demo model's
// tokenizer included: any bytes get a Status, never a crash, a hang or an out-of-bounds read
// (run under AddressSanitizer and UndefinedBehaviorSanitizer). The first byte picks the request
// type; corpus_requests/ holds a valid message of each (make_request_corpus.sh), which the fuzzer
// mutates.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/model_registry.h"
#include "core/testing/fake_served_model.h"
#include "lensd/v1/attribution.pb.h"
#include "lensd/v1/lens.pb.h"
#include "lensd/v1/models.pb.h"
#include "lensd/v1/patching.pb.h"
#include "lensd/v1/training.pb.h"
#include "server/attribution_convert.h"
#include "server/convert.h"
#include "server/intervention_convert.h"
#include "server/patching_convert.h"
#include "server/patching_job.h"
#include "server/request_cost.h"
#include "server/wire_parse.h"

namespace lensd::server {
namespace {

// The demo model's shape (GPT-2, 6 layers, vocabulary 4096) with its tokenizer.
const LoadedModel& Model() {
  static const LoadedModel* model = [] {
    ServedModelInfo info;
    info.architecture = "gpt2";
    info.num_layers = 6;
    info.d_model = 128;
    info.num_heads = 4;
    info.vocab_size = 4096;
    info.dtype = "float32";
    info.hook_points = {"blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern"};
    info.hook_widths = {128, 4};
    info.hook_per_key_position = {false, true};
    auto* m = new LoadedModel();
    m->name = "kjv-gpt2";
    m->model = std::make_shared<lensd::testing::FakeServedModel>(info);
    auto tokenizer = tokenizer::Tokenizer::FromFile(LENSD_DEMO_TOKENIZER);
    if (tokenizer.ok()) m->tokenizer = *std::move(tokenizer);
    return m;
  }();
  return *model;
}

template <typename Request>
bool Parse(absl::string_view bytes, Request* request) {
  return ParseRequest(bytes, request).ok();
}

std::vector<int64_t> Tokens(const v1::Input& input) {
  int64_t text_bytes = 0;
  absl::StatusOr<std::vector<int64_t>> tokens = ResolveInput(input, Model(), Limits{}, &text_bytes);
  return tokens.ok() ? *std::move(tokens) : std::vector<int64_t>{};
}

void Decode(absl::string_view bytes) {
  v1::DecodeRequest r;
  if (!Parse(bytes, &r)) return;
  absl::StatusOr<DecodeSpec> spec = ToDecodeSpec(r, Tokens(r.input()));
  if (!spec.ok() || !CheckDistinct("positions", spec->positions).ok()) return;
  int64_t source_tokens = 0;
  absl::StatusOr<std::vector<InterventionSpec>> edits =
      ToInterventions(r.interventions(), Model(), Limits{}, &source_tokens);
  if (edits.ok()) spec->interventions = *std::move(edits);
  (void)CheckRequestCost(DecodeCost(*spec, Model().model->info(), false), Limits{});
  (void)CheckRequestCost(DecodeCost(*spec, Model().model->info(), true), Limits{});
}

void Generate(absl::string_view bytes) {
  v1::GenerateRequest r;
  if (Parse(bytes, &r)) (void)ToGenerateSpec(r, Tokens(r.input()), Limits{});
}

void Activations(absl::string_view bytes) {
  v1::GetActivationsRequest r;
  if (!Parse(bytes, &r)) return;
  ActivationsSpec spec;
  spec.tokens = Tokens(r.input());
  spec.hook_points.assign(r.hook_points().begin(), r.hook_points().end());
  spec.gradients = r.gradients();
  (void)CheckDistinct("hook_points", spec.hook_points);
  (void)ToMetricSpec(r.metric());
  (void)CheckRequestCost(ActivationsCost(spec, Model().model->info()), Limits{});
}

void EncodeSae(absl::string_view bytes) {
  v1::EncodeSaeRequest r;
  if (!Parse(bytes, &r)) return;
  absl::StatusOr<EncodeSaeSpec> spec = ToEncodeSaeSpec(r, Tokens(r.input()));
  SaeDescription sae;
  sae.d_in = 128;
  sae.d_sae = 1024;
  if (spec.ok()) (void)CheckRequestCost(EncodeSaeCost(*spec, {sae}), Limits{});
}

void NodeAttribution(absl::string_view bytes) {
  v1::NodeAttributionRequest r;
  if (!Parse(bytes, &r)) return;
  std::vector<std::vector<int64_t>> reference;
  reference.reserve(static_cast<size_t>(r.reference_size()));
  for (const v1::Input& input : r.reference()) reference.push_back(Tokens(input));
  absl::StatusOr<NodeAttributionSpec> spec =
      ToNodeAttributionSpec(r, Tokens(r.input()), Tokens(r.patch()), std::move(reference));
  SaeDescription sae;
  sae.d_in = 128;
  sae.d_sae = 1024;
  if (spec.ok()) {
    (void)CheckRequestCost(NodeAttributionCost(*spec, Model().model->info(), {sae}), Limits{});
  }
}

void LayerAttribution(absl::string_view bytes) {
  v1::LayerAttributionRequest r;
  if (Parse(bytes, &r)) (void)ToLayerAttributionSpec(r, Tokens(r.input()));
}

void ActivationPatching(absl::string_view bytes) {
  v1::ActivationPatchingRequest r;
  if (!Parse(bytes, &r)) return;
  (void)ToPatchingSpec(r, Tokens(r.clean()), Tokens(r.corrupted()), Model().model->info(),
                       Limits{});
}

void Tokenize(absl::string_view bytes) {
  v1::TokenizeRequest r;
  if (Parse(bytes, &r) && Model().tokenizer != nullptr) {
    (void)Model().tokenizer->Encode(r.text(), r.add_special_tokens());
  }
}

void ParseOnly(absl::string_view bytes, int which) {
  v1::SubmitJobRequest submit;
  v1::LoadModelRequest load;
  v1::LoadSaeRequest sae;
  v1::WatchJobRequest watch;
  google::protobuf::Message* messages[] = {&submit, &load, &sae, &watch};
  if (!ParseRequest(bytes, messages[which % 4]).ok()) return;
  if (which % 4 == 0 && submit.has_activation_patching()) {
    (void)PlanPatchingJob(submit.activation_patching(), Model(), Limits{});
  }
}

}  // namespace
}  // namespace lensd::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  namespace s = lensd::server;
  switch (data[0] % 13) {
    case 0:
      s::Decode(bytes);
      break;
    case 1:
      s::Generate(bytes);
      break;
    case 2:
      s::Activations(bytes);
      break;
    case 3:
      s::EncodeSae(bytes);
      break;
    case 4:
      s::NodeAttribution(bytes);
      break;
    case 5:
      s::LayerAttribution(bytes);
      break;
    case 6:
      s::Tokenize(bytes);
      break;
    case 7:
      s::ActivationPatching(bytes);
      break;
    default:
      s::ParseOnly(bytes, data[0] % 13 - 8);
  }
  return 0;
}
