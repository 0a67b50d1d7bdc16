// Tokenizer parity with the Python `tokenizers` library (tokenizers 0.21.0,
// tests/requirements.txt).
//
// For each fixture tokenizer (GPT-2's real vocabulary and one tokenizer of each family lensd
// serves), tokenizer_reference.py encodes and decodes 2,100 generated strings with the library;
// lensd must give identical ids, token strings, character offsets, special-token masks and
// decoded text. Tolerance: none (exact equality).
#include <fstream>
#include <string>

#include "core/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

std::string Escaped(const std::string& text) { return nlohmann::json(text).dump(); }

class TokenizerParity : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerParity, MatchesTokenizersLibrary) {
  const std::string& family = GetParam();
  // The fixtures, and the demo model's own tokenizer.
  const std::string path =
      family == "kjv_gpt2"
          ? std::string(LENSD_TEST_SOURCE_DIR) + "/deploy/models/kjv-gpt2/tokenizer.json"
          : std::string(LENSD_TEST_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + family +
                "/tokenizer.json";
  auto tok = Tokenizer::FromFile(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::ifstream reference(std::string(LENSD_TEST_BINARY_DIR) + "/parity/tokenizers/" + family +
                          ".jsonl");
  ASSERT_TRUE(reference) << "reference file missing: run the tokenizer_reference fixture";

  int cases = 0;
  int mismatches = 0;
  std::string line;
  while (std::getline(reference, line)) {
    const nlohmann::json want = nlohmann::json::parse(line);
    const std::string text = want["text"];
    ++cases;
    auto got = (*tok)->Encode(text);
    ASSERT_TRUE(got.ok()) << Escaped(text) << ": " << got.status();
    std::vector<std::vector<size_t>> offsets;
    for (const auto& [start, end] : got->offsets) offsets.push_back({start, end});
    auto plain = (*tok)->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(plain.ok());
    const std::vector<int32_t> ids = want["ids"];
    const bool same =
        got->ids == ids && got->tokens == want["tokens"].get<std::vector<std::string>>() &&
        offsets == want["offsets"].get<std::vector<std::vector<size_t>>>() &&
        got->special_tokens_mask == want["special_tokens_mask"].get<std::vector<uint8_t>>() &&
        plain->ids == want["ids_no_special"].get<std::vector<int32_t>>() &&
        (*tok)->Decode(ids, true) == want["decoded"].get<std::string>() &&
        (*tok)->Decode(ids, false) == want["decoded_with_special"].get<std::string>();
    if (!same && ++mismatches <= 5) {
      ADD_FAILURE() << family << " differs on " << Escaped(text) << "\n  want ids "
                    << nlohmann::json(ids).dump() << " tokens " << want["tokens"].dump()
                    << " offsets " << want["offsets"].dump() << " decoded "
                    << want["decoded"].dump() << "\n  got  ids " << nlohmann::json(got->ids).dump()
                    << " tokens " << nlohmann::json(got->tokens).dump() << " offsets "
                    << nlohmann::json(offsets).dump() << " decoded "
                    << Escaped((*tok)->Decode(ids, true));
    }
  }
  EXPECT_GE(cases, 2000);
  EXPECT_EQ(mismatches, 0) << "of " << cases << " strings";
}

INSTANTIATE_TEST_SUITE_P(Families, TokenizerParity,
                         testing::Values("gpt2", "neox", "llama3", "qwen2", "llama2", "mistral",
                                         "gemma", "opt", "bloom", "qwen3", "olmo2", "phi3",
                                         "gemma3", "kjv_gpt2"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace lensd::tokenizer
