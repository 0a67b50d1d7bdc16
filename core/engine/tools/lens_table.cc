// lensd-lens: runs the engine in-process on a model folder and prints a lens's per-layer
// decoding as a table (layers as rows, input positions as columns, the top-1 token and its
// probability), optionally followed by a greedy generation from one layer. The gRPC server and
// lensctl supersede it for remote use; it stays as an offline check.
#include <ATen/ATen.h>

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
#include "core/engine/lens/decode.h"
#include "core/engine/lens/generate.h"
#include "core/engine/lens/lens.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/models/model_loader.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode.h"

ABSL_FLAG(std::string, model, "deploy/models/kjv-gpt2", "Hugging Face model folder");
ABSL_FLAG(std::string, prompt, "In the beginning God created the heaven and the", "text to decode");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:<index>");
ABSL_FLAG(std::string, lens, "", "tuned-lens folder; empty for the logit lens");
ABSL_FLAG(int, width, 9, "characters per table cell");
ABSL_FLAG(int, generate_layer, -1,
          "also generate greedily from the lens at this layer (the layer count for the model's "
          "own output); -1 for no generation");
ABSL_FLAG(int, max_new_tokens, 12, "tokens to generate");

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

int Fail(const absl::Status& status) {
  std::cerr << status << "\n";
  return 1;
}

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_model);
  auto tokenizer = lensd::tokenizer::Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  auto model =
      lensd::engine::LoadModel(dir, {absl::GetFlag(FLAGS_dtype), absl::GetFlag(FLAGS_device)});
  if (!model.ok()) return Fail(model.status());
  std::unique_ptr<lensd::engine::Lens> lens = std::make_unique<lensd::engine::LogitLens>();
  if (!absl::GetFlag(FLAGS_lens).empty()) {
    auto tuned = lensd::engine::TunedLens::Load(absl::GetFlag(FLAGS_lens), **model, "tuned");
    if (!tuned.ok()) return Fail(tuned.status());
    lens = *std::move(tuned);
  }
  auto encoding = (*tokenizer)->Encode(absl::GetFlag(FLAGS_prompt));
  if (!encoding.ok()) return Fail(encoding.status());
  if (encoding->ids.empty())
    return Fail(absl::InvalidArgumentError("the prompt encodes to no tokens"));
  const at::Tensor ids =
      at::tensor(std::vector<int64_t>(encoding->ids.begin(), encoding->ids.end()))
          .view({1, static_cast<int64_t>(encoding->ids.size())});
  lensd::engine::DecodeRequest request;
  request.tokens = ids;
  request.top_k = 1;
  request.statistics = 0;
  auto decoded = lensd::engine::Decode(**model, *lens, request);
  if (!decoded.ok()) return Fail(decoded.status());

  const auto width = static_cast<size_t>(absl::GetFlag(FLAGS_width));
  const int64_t layers = (*model)->config().num_layers;
  std::cout << lens->kind() << " lens of " << dir << " (" << layers
            << " layers); each cell: top-1 token, probability\n\n"
            << Pad("layer", 8);
  for (const std::string& token : encoding->tokens)
    std::cout << Pad(Readable(token, width), width + 1);
  std::cout << "\n";
  for (size_t row = 0; row < decoded->rows.size(); ++row) {
    std::ostringstream tokens_line, probs_line;
    for (size_t p = 0; p < decoded->positions.size(); ++p) {
      const auto r = static_cast<int64_t>(row), c = static_cast<int64_t>(p);
      const auto token =
          (*tokenizer)
              ->IdToToken(static_cast<int32_t>(decoded->top_ids[0][r][c][0].item<int64_t>()));
      tokens_line << Pad(Readable(token.value_or("?"), width), width + 1);
      probs_line << Pad(
          absl::StrCat(std::lround(decoded->top_probs[0][r][c][0].item<float>() * 100), "%"),
          width + 1);
    }
    const int64_t layer = decoded->rows[row];
    std::cout << Pad(layer < layers ? std::to_string(layer) : "output", 8) << tokens_line.str()
              << "\n"
              << Pad("", 8) << probs_line.str() << "\n";
  }
  if (absl::GetFlag(FLAGS_generate_layer) >= 0) {
    lensd::engine::GenerateRequest generate;
    generate.tokens = ids;
    generate.layer = absl::GetFlag(FLAGS_generate_layer);
    generate.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
    generate.greedy = true;
    auto generated = lensd::engine::Generate(**model, *lens, generate);
    if (!generated.ok()) return Fail(generated.status());
    const std::vector<int32_t> tokens(generated->tokens[0].begin(), generated->tokens[0].end());
    std::cout << "\ngreedy generation from layer " << generate.layer << ":\n  "
              << absl::GetFlag(FLAGS_prompt) << " | " << (*tokenizer)->Decode(tokens) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints a lens's per-layer decoding of a prompt: the logit lens (the model's final norm "
      "and unembedding applied to the residual stream entering each layer) or a tuned lens, "
      "plus the model's own output row; optionally a greedy generation from one layer.\n"
      "  lensd-lens --model deploy/models/kjv-gpt2 --prompt \"In the beginning\" "
      "--generate_layer 3");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
