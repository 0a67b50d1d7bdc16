// lensd-logit-lens: runs the engine in-process on a model folder and prints the logit lens as a
// table (layers as rows, input positions as columns, the top-1 token and its probability).
// The gRPC server and lensctl supersede it for remote use; it stays as an offline check.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/engine/causal_lm.h"
#include "core/engine/model_loader.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode.h"

ABSL_FLAG(std::string, model, "deploy/models/kjv-gpt2", "Hugging Face model folder");
ABSL_FLAG(std::string, prompt, "In the beginning God created the heaven and the", "text to decode");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:<index>");
ABSL_FLAG(int, width, 9, "characters per table cell");

namespace {

// Renders a vocabulary string readably: byte-level space and newline markers become _ and \n,
// and long tokens are cut (tuned-lens's TokenFormatter does the same).
std::string Readable(const std::string& token, size_t width) {
  std::string text = absl::StrReplaceAll(
      token, {{"\xC4\xA0", "_"}, {"\xE2\x96\x81", "_"}, {"\xC4\x8A", "\\n"}, {"\n", "\\n"}});
  if (lensd::tokenizer::CountCodePoints(text) > width) {
    std::string cut;
    size_t count = 0;
    for (const auto& cp : lensd::tokenizer::DecodeUtf8(text)) {
      if (++count > width - 1) break;
      lensd::tokenizer::AppendUtf8(cp.value, &cut);
    }
    text = cut + "\xE2\x80\xA6";
  }
  return text;
}

std::string Pad(const std::string& text, size_t width) {
  const size_t n = lensd::tokenizer::CountCodePoints(text);
  return text + std::string(n < width ? width - n : 1, ' ');
}

int Run() {
  using lensd::engine::HookKind;
  const std::string dir = absl::GetFlag(FLAGS_model);
  auto tokenizer = lensd::tokenizer::Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tokenizer.ok()) return std::cerr << tokenizer.status() << "\n", 1;
  auto model =
      lensd::engine::LoadModel(dir, {absl::GetFlag(FLAGS_dtype), absl::GetFlag(FLAGS_device)});
  if (!model.ok()) return std::cerr << model.status() << "\n", 1;
  auto encoding = (*tokenizer)->Encode(absl::GetFlag(FLAGS_prompt));
  if (!encoding.ok()) return std::cerr << encoding.status() << "\n", 1;
  if (encoding->ids.empty()) return std::cerr << "the prompt encodes to no tokens\n", 1;

  const int64_t layers = (*model)->config().num_layers;
  lensd::engine::Hooks hooks(layers);
  for (int64_t i = 0; i < layers; ++i) hooks.Capture({HookKind::kResidPre, i});
  const at::Tensor ids =
      at::tensor(std::vector<int64_t>(encoding->ids.begin(), encoding->ids.end()))
          .view({1, static_cast<int64_t>(encoding->ids.size())});
  auto out = (*model)->Forward({ids}, &hooks);
  if (!out.ok()) return std::cerr << out.status() << "\n", 1;

  const auto width = static_cast<size_t>(absl::GetFlag(FLAGS_width));
  std::cout << "logit lens of " << dir << " (" << layers << " layers); each cell: top-1 token, "
            << "probability\n\n"
            << Pad("layer", 8);
  for (const std::string& token : encoding->tokens)
    std::cout << Pad(Readable(token, width), width + 1);
  std::cout << "\n";
  c10::InferenceMode guard;
  for (int64_t row = 0; row <= layers; ++row) {
    at::Tensor logits = out->logits[0];
    if (row < layers) {
      auto lens = (*model)->FinalNormAndUnembed(hooks.Captured({HookKind::kResidPre, row})[0]);
      if (!lens.ok()) return std::cerr << lens.status() << "\n", 1;
      logits = *lens;
    }
    const auto [prob, top] = at::softmax(logits.to(at::kFloat), -1).max(-1);
    std::ostringstream tokens_line, probs_line;
    for (int64_t p = 0; p < ids.size(1); ++p) {
      const auto token = (*tokenizer)->IdToToken(static_cast<int32_t>(top[p].item<int64_t>()));
      tokens_line << Pad(Readable(token.value_or("?"), width), width + 1);
      probs_line << Pad(absl::StrCat(std::lround(prob[p].item<float>() * 100), "%"), width + 1);
    }
    std::cout << Pad(row < layers ? std::to_string(row) : "output", 8) << tokens_line.str() << "\n"
              << Pad("", 8) << probs_line.str() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints the logit lens of a prompt: the model's final norm and unembedding applied to the "
      "residual stream entering each layer, plus the model's own output row.\n"
      "  lensd-logit-lens --model deploy/models/kjv-gpt2 --prompt \"In the beginning\"");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
