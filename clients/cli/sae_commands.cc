// lensctl's SAE and attribution commands: `sae encode|load|unload`, `attribute` (node
// attribution over SAE features and error nodes) and `dla` (direct logit attribution per layer).
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "clients/cli/commands.h"
#include "clients/cli/output.h"
#include "lensd/v1/attribution.grpc.pb.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"

namespace lensctl {
namespace v1 = lensd::v1;
namespace {

std::string Rest(const Parsed& p) {
  return absl::StrJoin(p.positional.begin() + 1, p.positional.end(), " ");
}

std::vector<std::string> Names(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipEmpty());
}

int PrintJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::MessageToJsonString(m, &json);
  std::cout << json << "\n";
  return 0;
}

int Encode(const Connection& c, const Parsed& p) {
  v1::EncodeSaeRequest q;
  q.set_model(p.Get("model"));
  if (!FillInput(p, Rest(p), q.mutable_input())) return Usage("--ids: comma-separated integers");
  for (const std::string& s : Names(p.Get("saes"))) q.add_saes(s);
  int64_t top_k = 0;
  if (!absl::SimpleAtoi(p.Get("top_k"), &top_k)) return Usage("--top_k must be an integer");
  q.set_top_k(top_k);
  v1::EncodeSaeResponse r;
  const grpc::Status s = v1::Attribution::NewStub(c.channel)->EncodeSae(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  if (p.Flag("json")) return PrintJson(r);
  for (const v1::SaeFeatures& f : r.saes()) {
    std::cout << absl::StrFormat("%s at %s: FVU %.3f\n", f.sae(), f.hook_point(), f.fvu_total());
    std::cout << absl::StrFormat("%4s %-12s %4s %8s  %s\n", "POS", "TOKEN", "L0", "|ERROR|",
                                 "TOP FEATURES (index:activation)");
    for (int t = 0; t < r.tokens_size(); ++t) {
      std::string top;
      for (int64_t j = f.offsets(t); j < f.offsets(t + 1); ++j) {
        absl::StrAppendFormat(&top, "%s%d:%.2f", top.empty() ? "" : " ", f.indices(j), f.values(j));
      }
      std::cout << absl::StrFormat("%4d %-12s %4d %8.3f  %s\n", t, Readable(r.tokens(t).text(), 12),
                                   f.l0(t), f.error_norm(t), top);
    }
  }
  return 0;
}

int LoadSae(const Connection& c, const Parsed& p) {
  v1::LoadSaeRequest q;
  q.set_model(p.Get("model"));
  q.set_sae(Rest(p));
  q.set_hook_point(p.Get("hook_point"));
  q.set_dtype(p.Get("dtype"));
  v1::SaeInfo r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->LoadSae(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  std::cout << absl::StrFormat("loaded SAE %s (%s %s, %d -> %d features at %s, %s, %d bytes)\n",
                               r.name(), r.format(), r.architecture(), r.d_in(), r.d_sae(),
                               r.hook_point(), r.dtype(), r.memory_bytes());
  return 0;
}

int UnloadSae(const Connection& c, const Parsed& p) {
  v1::UnloadSaeRequest q;
  q.set_model(p.Get("model"));
  q.set_sae(Rest(p));
  v1::UnloadSaeResponse r;
  const grpc::Status s = v1::Models::NewStub(c.channel)->UnloadSae(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  std::cout << "unloaded SAE " << q.sae() << " (" << r.freed_bytes() << " bytes freed)\n";
  return 0;
}

int Sae(const Connection& c, const Parsed& p) {
  const std::string action = p.positional.front();
  if (p.positional.size() < 2) return Usage("sae " + action + ": give its argument");
  if (action == "encode") return Encode(c, p);
  if (action == "load") return LoadSae(c, p);
  if (action == "unload") return UnloadSae(c, p);
  return Usage("sae: the action is encode, load or unload, not \"" + action + "\"");
}

template <typename Enum>
bool Choose(const std::string& value, const std::map<std::string, Enum>& choices, Enum* out) {
  const auto it = choices.find(value);
  if (it == choices.end()) return false;
  *out = it->second;
  return true;
}

int Attribute(const Connection& c, const Parsed& p) {
  v1::NodeAttributionRequest q;
  q.set_model(p.Get("model"));
  if (!FillInput(p, absl::StrJoin(p.positional, " "), q.mutable_input())) {
    return Usage("--ids: comma-separated integers");
  }
  for (const std::string& s : Names(p.Get("saes"))) q.add_saes(s);
  v1::MetricKind metric{};
  v1::Method method{};
  v1::Baseline baseline{};
  if (!Choose<v1::MetricKind>(p.Get("metric"),
                              {{"loss", v1::METRIC_KIND_LOSS},
                               {"logit", v1::METRIC_KIND_LOGIT},
                               {"logprob", v1::METRIC_KIND_LOG_PROB},
                               {"prob", v1::METRIC_KIND_PROB},
                               {"logit_diff", v1::METRIC_KIND_LOGIT_DIFF}},
                              &metric) ||
      !Choose<v1::Method>(p.Get("method"),
                          {{"atp", v1::METHOD_ATTRIBUTION_PATCHING},
                           {"ig", v1::METHOD_INTEGRATED_GRADIENTS},
                           {"exact", v1::METHOD_EXACT}},
                          &method) ||
      !Choose<v1::Baseline>(p.Get("baseline"),
                            {{"zero", v1::BASELINE_ZERO},
                             {"mean", v1::BASELINE_MEAN},
                             {"mean_per_position", v1::BASELINE_MEAN_PER_POSITION},
                             {"patch", v1::BASELINE_PATCH}},
                            &baseline)) {
    return Usage(
        "--metric is loss|logit|logprob|prob|logit_diff, --method atp|ig|exact, --baseline "
        "zero|mean|mean_per_position|patch");
  }
  q.mutable_metric()->set_kind(metric);
  q.set_method(method);
  q.set_baseline(baseline);
  int64_t top_n = 0, target = -1, foil = -1, steps = 0;
  if (!absl::SimpleAtoi(p.Get("top_n"), &top_n) || !absl::SimpleAtoi(p.Get("target"), &target) ||
      !absl::SimpleAtoi(p.Get("foil"), &foil) || !absl::SimpleAtoi(p.Get("ig_steps"), &steps)) {
    return Usage("--top_n, --target, --foil and --ig_steps are integers");
  }
  q.set_top_n(top_n);
  if (target >= 0) q.mutable_metric()->set_target(target);
  if (foil >= 0) q.mutable_metric()->set_foil(foil);
  if (steps > 0) q.set_ig_steps(steps);
  if (!p.Get("patch").empty()) q.mutable_patch()->set_text(p.Get("patch"));
  for (const absl::string_view text : absl::StrSplit(p.Get("reference"), '|', absl::SkipEmpty())) {
    q.add_reference()->set_text(std::string(text));
  }
  if (p.Flag("per_dimension_errors")) q.set_error_nodes(v1::ERROR_NODES_PER_DIMENSION);
  if (p.Flag("token_trace_sign")) q.set_sign_convention(v1::SIGN_CONVENTION_TOKEN_TRACE);
  v1::NodeAttributionResponse r;
  const grpc::Status s =
      v1::Attribution::NewStub(c.channel)->NodeAttribution(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  if (p.Flag("json")) return PrintJson(r);
  std::cout << absl::StrFormat("metric %.4f (target %s)", r.metric(),
                               Readable(r.target().text(), 16));
  if (r.has_total_effect()) std::cout << absl::StrFormat(", patched effect %.4f", r.total_effect());
  std::cout << absl::StrFormat(", sum of %d effects %.4f\n", r.nodes_considered(),
                               r.sum_of_effects());
  std::cout << absl::StrFormat("%10s  %-12s %4s %-12s %-7s %7s %9s %9s\n", "EFFECT", "SAE", "POS",
                               "TOKEN", "TYPE", "FEATURE", "VALUE", "GRAD");
  for (const v1::AttributionNode& n : r.nodes()) {
    std::cout << absl::StrFormat("%10.5f  %-12s %4d %-12s %-7s %7d %9.4f %9.4f\n", n.effect(),
                                 Readable(n.sae(), 12), n.token_idx(), Readable(n.token_str(), 12),
                                 n.act_type(), n.feature(), n.value(), n.grad());
  }
  return 0;
}

int Dla(const Connection& c, const Parsed& p) {
  v1::LayerAttributionRequest q;
  q.set_model(p.Get("model"));
  if (!FillInput(p, absl::StrJoin(p.positional, " "), q.mutable_input())) {
    return Usage("--ids: comma-separated integers");
  }
  int64_t target = -1, foil = -1;
  if (!absl::SimpleAtoi(p.Get("target"), &target) || !absl::SimpleAtoi(p.Get("foil"), &foil)) {
    return Usage("--target and --foil are token ids");
  }
  if (target >= 0) q.set_target(target);
  if (foil >= 0) q.set_foil(foil);
  if (p.Get("mode") == "lens") q.set_mode(v1::LAYER_ATTRIBUTION_MODE_LOGIT_LENS);
  q.set_per_head(p.Flag("per_head"));
  if (p.Get("mode") != "lens" && p.Get("mode") != "direct") {
    return Usage("--mode is direct or lens");
  }
  v1::LayerAttributionResponse r;
  const grpc::Status s = v1::Lens::NewStub(c.channel)->LayerAttribution(c.Context().get(), q, &r);
  if (!s.ok()) return Fail(s);
  if (p.Flag("json")) return PrintJson(r);
  std::cout << absl::StrFormat("logit of %s at position %d: %.4f\n",
                               Readable(r.target().text(), 16), r.position(), r.logit());
  double largest = r.bias() == 0 ? 1e-9 : std::abs(r.bias());
  for (const double v : r.values()) largest = std::max(largest, std::abs(v));
  for (int i = 0; i < r.labels_size(); ++i) {
    const int bar = static_cast<int>(20 * std::abs(r.values(i)) / largest);
    std::cout << absl::StrFormat("%-12s %9.4f %s\n", r.labels(i), r.values(i),
                                 std::string(bar, r.values(i) < 0 ? '-' : '+'));
  }
  if (q.mode() == v1::LAYER_ATTRIBUTION_MODE_DIRECT_LOGIT) {
    std::cout << absl::StrFormat("%-12s %9.4f\n", "norm bias", r.bias());
  }
  return 0;
}

}  // namespace

std::vector<CommandEntry> SaeCommands() {
  const OptionSpec kModel{"model", "model name (lensctl models lists them)", "kjv-gpt2"};
  const OptionSpec kJson{"json", "print the response as JSON", "false", true};
  const OptionSpec kSaes{"saes", "comma-separated SAE names (default every loaded SAE)", ""};
  return {
      {{"sae",
        "SAE features of a prompt (encode), or attach / detach an SAE of <model>/saes/ (admin)",
        "encode <prompt> | load <sae> | unload <sae>",
        {kModel,
         IdsOption(),
         kSaes,
         {"top_k", "features per position (encode; 0: all active)", "8"},
         {"hook_point", "hook point overriding the SAE's cfg.json (load)", ""},
         {"dtype", "float32, bfloat16 or float16 (load; default the cfg's)", ""},
         kJson}},
       Sae},
      {{"attribute",
        "effects of SAE features and error nodes on a metric, largest first",
        "<prompt>",
        {kModel,
         IdsOption(),
         kSaes,
         {"metric", "loss, logit, logprob, prob or logit_diff", "loss"},
         {"target", "target token id (default the model's top-1)", "-1"},
         {"foil", "foil token id (logit_diff)", "-1"},
         {"baseline", "zero, mean or mean_per_position (over --reference), or patch (--patch)",
          "zero"},
         {"patch", "counterfactual prompt of the same length (baseline patch)", ""},
         {"reference", "|-separated prompts whose mean is the baseline (baseline mean)", ""},
         {"method", "atp (attribution patching), ig (integrated gradients) or exact", "atp"},
         {"ig_steps", "integrated-gradients steps (0: the server's 10)", "0"},
         {"top_n", "nodes to show", "20"},
         {"per_dimension_errors", "one error node per input dimension", "false", true},
         {"token_trace_sign", "effect = value x grad (token-trace) instead of the patch effect",
          "false", true},
         kJson}},
       Attribute},
      {{"dla",
        "direct logit attribution per embedding, attention and MLP output (or the logit lens)",
        "<prompt>",
        {kModel,
         IdsOption(),
         {"target", "target token id (default the model's top-1)", "-1"},
         {"foil", "attribute logit(target) - logit(foil)", "-1"},
         {"mode", "direct or lens", "direct"},
         {"per_head", "split each attention output into its heads (direct)", "false", true},
         kJson}},
       Dla},
  };
}

}  // namespace lensctl
