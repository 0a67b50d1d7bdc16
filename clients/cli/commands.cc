#include "clients/cli/commands.h"

#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <iostream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "clients/cli/output.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace lensctl {
namespace v1 = lensd::v1;

constexpr char kClientVersion[] = "0.1.0";

std::unique_ptr<grpc::ClientContext> Connection::Context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  context->AddMetadata("x-lensd-client-version", kClientVersion);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  return context;
}

const char* const kCodes[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

int Fail(const grpc::Status& s) {
  std::cerr << "lensctl: " << kCodes[s.error_code()] << ": " << s.error_message() << "\n";
  return 1;
}

int Usage(const std::string& message) {
  std::cerr << "lensctl: " << message << "\n";
  return 2;
}

namespace {

bool Ints(const std::string& text, std::vector<int64_t>* out) {
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) return false;
    out->push_back(v);
  }
  return true;
}

std::string Prompt(const Parsed& p) { return absl::StrJoin(p.positional, " "); }

}  // namespace

OptionSpec IdsOption() {
  return {"ids", "comma-separated token ids to send instead of the prompt text", ""};
}

bool FillInput(const Parsed& p, const std::string& text, v1::Input* input) {
  const std::string ids = p.Get("ids");
  if (ids.empty()) {
    input->set_text(text);
    return true;
  }
  std::vector<int64_t> tokens;
  if (!Ints(ids, &tokens) || tokens.empty()) return false;
  for (const int64_t t : tokens) input->mutable_tokens()->add_ids(t);
  return true;
}

namespace {

int Models(const Connection& c, const Parsed& p) {
  v1::ListModelsResponse r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->ListModels(c.Context().get(), {}, &r);
  if (!s.ok()) return Fail(s);
  if (p.Flag("json")) {
    std::string json;
    google::protobuf::util::MessageToJsonString(r, &json);
    std::cout << json << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-16s %-10s %-8s %6s %7s %7s %-9s %-6s %10s  %-14s %s\n", "MODEL",
                               "STATE", "ARCH", "LAYERS", "D_MODEL", "VOCAB", "DTYPE", "DEVICE",
                               "MEMORY", "LENSES", "SAES");
  for (const auto& m : r.models()) {
    std::string lenses;
    for (const auto& l : m.lenses()) absl::StrAppend(&lenses, lenses.empty() ? "" : ",", l.name());
    std::string saes;
    for (const auto& e : m.saes()) absl::StrAppend(&saes, saes.empty() ? "" : ",", e.name());
    std::cout << absl::StrFormat(
        "%-16s %-10s %-8s %6d %7d %7d %-9s %-6s %9.1fM  %-14s %s\n", m.name(),
        absl::AsciiStrToLower(v1::ModelState_Name(m.state()).substr(12)), m.architecture(),
        m.num_layers(), m.d_model(), m.vocab_size(), m.dtype(), m.device(),
        static_cast<double>(m.memory_bytes()) / (1 << 20), lenses, saes);
  }
  return 0;
}

int Info(const Connection& c, const Parsed&) {
  v1::ServerInfo r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->GetServerInfo(c.Context().get(), {}, &r);
  if (!s.ok()) return Fail(s);
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  google::protobuf::util::MessageToJsonString(r, &json, options);
  std::cout << json;
  return 0;
}

int Tokenize(const Connection& c, const Parsed& p) {
  v1::TokenizeRequest q;
  q.set_model(p.Get("model"));
  q.set_text(Prompt(p));
  q.set_add_special_tokens(p.Flag("special"));
  v1::TokenizeResponse r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->Tokenize(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  for (const auto& t : r.tokens()) std::cout << t.id() << "\t" << Readable(t.text(), 40) << "\n";
  return 0;
}

int Decode(const Connection& c, const Parsed& p) {
  v1::DecodeRequest q;
  q.set_model(p.Get("model"));
  if (!FillInput(p, Prompt(p), q.mutable_input())) return Usage("--ids: comma-separated integers");
  if (std::string error; !AddInterventions(p, q.mutable_interventions(), &error)) {
    return Usage(error);
  }
  q.set_lens(p.Get("lens"));
  std::vector<int64_t> layers, positions;
  if (!Ints(p.Get("layers"), &layers) || !Ints(p.Get("positions"), &positions)) {
    return Usage("--layers and --positions are comma-separated integers");
  }
  for (const int64_t l : layers) q.add_layers(l);
  for (const int64_t x : positions) q.add_positions(x);
  int top_k = 0;
  if (!absl::SimpleAtoi(p.Get("top_k"), &top_k)) return Usage("--top_k must be an integer");
  q.set_top_k(top_k);
  q.set_compare_lens(p.Get("compare_lens"));
  v1::DecodeResponse r;
  const grpc::Status s = v1::Lens::NewStub(c.channel)->Decode(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  if (p.Flag("json")) {
    std::string json;
    google::protobuf::util::MessageToJsonString(r, &json);
    std::cout << json << "\n";
    return 0;
  }
  int width = 9;
  absl::SimpleAtoi(p.Get("width"), &width);
  std::cout << DecodeTable(r, static_cast<size_t>(width));
  return 0;
}

int Compare(const Connection& c, const Parsed& p) {
  std::vector<v1::DecodeResponse> responses;
  for (absl::string_view lens : absl::StrSplit(p.Get("lenses"), ',', absl::SkipEmpty())) {
    v1::DecodeRequest q;
    q.set_model(p.Get("model"));
    if (!FillInput(p, Prompt(p), q.mutable_input()))
      return Usage("--ids: comma-separated integers");
    q.set_lens(std::string(lens));
    q.set_top_k(1);
    q.add_statistics(v1::STATISTIC_FORWARD_KL);
    q.add_statistics(v1::STATISTIC_CROSS_ENTROPY);
    const grpc::Status s =
        v1::Lens::NewStub(c.channel)->Decode(c.Context().get(), q, &responses.emplace_back());
    if (!s.ok()) return Fail(s);
  }
  if (responses.empty()) return Usage("--lenses: name at least one lens");
  int width = 9;
  absl::SimpleAtoi(p.Get("width"), &width);
  std::cout << SideBySideTable(responses, static_cast<size_t>(width));
  return 0;
}

int Generate(const Connection& c, const Parsed& p) {
  v1::GenerateRequest q;
  q.set_model(p.Get("model"));
  if (!FillInput(p, Prompt(p), q.mutable_input())) return Usage("--ids: comma-separated integers");
  if (std::string error; !AddInterventions(p, q.mutable_interventions(), &error)) {
    return Usage(error);
  }
  q.set_lens(p.Get("lens"));
  int64_t layer = -1, max_new = 0, top_k = 0, seed = 0;
  double temperature = 1, top_p = 1;
  if (!absl::SimpleAtoi(p.Get("layer"), &layer) ||
      !absl::SimpleAtoi(p.Get("max_new_tokens"), &max_new) ||
      !absl::SimpleAtoi(p.Get("top_k"), &top_k) || !absl::SimpleAtoi(p.Get("seed"), &seed) ||
      !absl::SimpleAtod(p.Get("temperature"), &temperature) ||
      !absl::SimpleAtod(p.Get("top_p"), &top_p)) {
    return Usage(
        "--layer, --max_new_tokens, --top_k and --seed are integers; --temperature and "
        "--top_p numbers");
  }
  if (layer >= 0) q.set_layer(layer);
  q.set_max_new_tokens(static_cast<int32_t>(max_new));
  q.set_greedy(p.Flag("greedy"));
  q.set_temperature(temperature);
  q.set_top_k(static_cast<int32_t>(top_k));
  q.set_top_p(top_p);
  q.set_seed(static_cast<uint64_t>(seed));
  q.set_early_exit(p.Flag("early_exit"));
  auto context = c.Context();
  auto reader = v1::Lens::NewStub(c.channel)->Generate(context.get(), q);
  v1::GenerateResponse message;
  std::string reason;
  std::cout << (p.Get("ids").empty() ? Prompt(p) : "") << "\x1b[1m" << std::flush;
  while (reader->Read(&message)) {
    std::cout << message.token().text() << std::flush;
    if (message.finished()) reason = message.finish_reason();
  }
  std::cout << "\x1b[0m\n";
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  std::cerr << "(finished: " << reason << ")\n";
  return 0;
}

int Activations(const Connection& c, const Parsed& p) {
  v1::GetActivationsRequest q;
  q.set_model(p.Get("model"));
  if (!FillInput(p, Prompt(p), q.mutable_input())) return Usage("--ids: comma-separated integers");
  if (std::string error; !AddInterventions(p, q.mutable_interventions(), &error)) {
    return Usage(error);
  }
  for (absl::string_view h : absl::StrSplit(p.Get("hooks"), ',', absl::SkipEmpty())) {
    q.add_hook_points(std::string(h));
  }
  q.set_dtype(p.Get("dtype"));
  q.set_gradients(p.Flag("gradients"));
  const std::string out = p.Get("out");
  if (out.empty()) return Usage("--out names the .safetensors or .npy file to write");
  auto context = c.Context();
  auto reader = v1::Lens::NewStub(c.channel)->GetActivations(context.get(), q);
  std::map<std::string, Assembled> tensors;
  v1::TensorChunk chunk;
  while (reader->Read(&chunk)) {
    Assembled& t = tensors[chunk.name()];
    t.dtype = chunk.dtype();
    t.shape.assign(chunk.shape().begin(), chunk.shape().end());
    t.data += chunk.data();
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  if (const std::string error = WriteTensors(out, tensors); !error.empty()) return Usage(error);
  for (const auto& [name, t] : tensors) {
    std::cout << name << " " << t.dtype << " [" << absl::StrJoin(t.shape, ", ") << "]\n";
  }
  std::cout << "wrote " << out << "\n";
  return 0;
}

int Load(const Connection& c, const Parsed& p) {
  v1::LoadModelRequest q;
  q.set_model(p.Get("model"));
  q.set_dtype(p.Get("dtype"));
  q.set_device(p.Get("device"));
  v1::ModelInfo r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->LoadModel(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  std::cout << "loaded " << r.name() << " (" << r.architecture() << ", " << r.num_layers()
            << " layers, " << r.dtype() << " on " << r.device() << ")\n";
  return 0;
}

int Unload(const Connection& c, const Parsed& p) {
  v1::UnloadModelRequest q;
  q.set_model(p.Get("model"));
  v1::UnloadModelResponse r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->UnloadModel(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  std::cout << "unloaded " << q.model() << " (" << r.freed_bytes() << " bytes freed)\n";
  return 0;
}

int LoadLens(const Connection& c, const Parsed& p) {
  v1::LoadLensRequest q;
  q.set_model(p.Get("model"));
  q.set_lens(p.Get("lens"));
  v1::LensInfo r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->LoadLens(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  std::cout << "loaded lens " << r.name() << " (" << r.kind() << ", " << r.memory_bytes()
            << " bytes)\n";
  return 0;
}

int UnloadLens(const Connection& c, const Parsed& p) {
  v1::UnloadLensRequest q;
  q.set_model(p.Get("model"));
  q.set_lens(p.Get("lens"));
  v1::UnloadLensResponse r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->UnloadLens(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  std::cout << "unloaded lens " << q.lens() << "\n";
  return 0;
}

}  // namespace

std::vector<CommandEntry> Commands() {
  const OptionSpec kModel{"model", "model name (lensctl models lists them)", "kjv-gpt2"};
  const OptionSpec kJson{"json", "print the response as JSON", "false", true};
  const OptionSpec kLens{"lens", "lens: logit, or a loaded tuned lens", "logit"};
  std::vector<CommandEntry> commands = {
      {{"models", "list the repository's models and their state", "", {kJson}}, Models},
      {{"info", "server version, devices, memory budgets and limits", "", {}}, Info},
      {{"tokenize",
        "show how the model tokenizes a text",
        "<text>",
        {kModel, {"special", "add the tokenizer's special tokens", "false", true}}},
       Tokenize},
      {{"decode",
        "per-layer decoding of a prompt: a table of top-1 tokens (--json for all)",
        "<prompt>",
        {kModel,
         IdsOption(),
         kLens,
         {"layers", "comma-separated lens layers (default all)", ""},
         {"positions", "comma-separated positions (default all)", ""},
         {"top_k", "tokens per cell", "5"},
         {"compare_lens", "a second lens to compare with (JSON output)", ""},
         {"width", "characters per table cell", "9"},
         kJson}},
       Decode},
      {{"compare",
        "lenses side by side on a prompt: per layer the last position's top-1, mean KL to the "
        "model's output and mean next-token cross-entropy",
        "<prompt>",
        {kModel,
         IdsOption(),
         {"lenses", "comma-separated lenses", "logit,tuned"},
         {"width", "characters per token cell", "9"}}},
       Compare},
      {{"generate",
        "stream tokens sampled from a lens at one layer",
        "<prompt>",
        {kModel,
         IdsOption(),
         kLens,
         {"layer", "read-out layer (-1: the model's own output)", "-1"},
         {"max_new_tokens", "tokens to generate", "32"},
         {"greedy", "take the most likely token", "false", true},
         {"temperature", "sampling temperature", "1"},
         {"top_k", "sample among the top k", "0"},
         {"top_p", "nucleus sampling mass", "1"},
         {"seed", "sampler seed", "0"},
         {"early_exit", "run only the blocks below --layer", "false", true}}},
       Generate},
      {{"activations",
        "capture hook points and write .safetensors (or .npy for one)",
        "<prompt>",
        {kModel,
         IdsOption(),
         {"hooks", "comma-separated TransformerLens hook names", "blocks.0.hook_resid_pre"},
         {"dtype", "float32 or native", "float32"},
         {"gradients",
          "also d loss / d value at each hook (<hook>.grad; the last token's prediction)", "false",
          true},
         {"out", "output file", ""}}},
       Activations},
      {{"load",
        "load a model of the repository (admin)",
        "",
        {kModel,
         {"dtype", "float32, bfloat16, float16 or auto", "float32"},
         {"device", "cpu, cuda or cuda:<index>", "cpu"}}},
       Load},
      {{"unload", "unload a model after its queued requests (admin)", "", {kModel}}, Unload},
      {{"load-lens",
        "load a tuned lens from <model>/lenses/<lens> (admin)",
        "",
        {kModel, {"lens", "lens folder name", ""}}},
       LoadLens},
      {{"unload-lens", "unload a tuned lens (admin)", "", {kModel, {"lens", "lens name", ""}}},
       UnloadLens},
  };
  for (CommandEntry& c : commands) {
    if (c.command.name == "decode" || c.command.name == "generate" ||
        c.command.name == "activations") {
      for (OptionSpec& o : InterventionOptions()) c.command.options.push_back(std::move(o));
    }
  }
  for (CommandEntry& c : SaeCommands()) commands.push_back(std::move(c));
  for (CommandEntry& c : JobCommands()) commands.push_back(std::move(c));
  for (CommandEntry& c : InterventionCommands()) commands.push_back(std::move(c));
  return commands;
}

}  // namespace lensctl
