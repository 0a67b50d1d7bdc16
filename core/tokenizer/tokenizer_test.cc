// Malformed tokenizer.json files and inputs give a Status naming the file and field; behaviour
// on well-formed files is covered by tests/parity/tokenizer_parity_test.cc.
#include "core/tokenizer/tokenizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

nlohmann::json Minimal() {
  return nlohmann::json::parse(R"({
    "added_tokens": [{"id": 4, "content": "<eos>", "special": true}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3}, "merges": ["a b"]}
  })");
}

absl::Status Status(const nlohmann::json& json) {
  return Tokenizer::FromJson(json.dump(), "tok.json").status();
}

TEST(Tokenizer, MinimalFileEncodesAndDecodes) {
  auto tok = Tokenizer::FromJson(Minimal().dump(), "tok.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto enc = (*tok)->Encode("ab<eos>a");
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids, (std::vector<int32_t>{2, 4, 0}));
  EXPECT_EQ((*tok)->Decode(enc->ids, /*skip_special_tokens=*/false), "ab<eos>a");
  EXPECT_EQ((*tok)->Decode(enc->ids), "aba");
  EXPECT_EQ((*tok)->vocab_size(), 5);
}

TEST(Tokenizer, ReportsMalformedJsonWithFileName) {
  const auto status = Tokenizer::FromJson("{\"model\": ", "tok.json").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), AllOf(HasSubstr("tok.json"), HasSubstr("JSON")));
  EXPECT_EQ(Tokenizer::FromFile("/nonexistent/tokenizer.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(Tokenizer, ReportsMissingAndUnsupportedParts) {
  nlohmann::json j = Minimal();
  j.erase("model");
  EXPECT_THAT(Status(j).message(), HasSubstr("model is missing"));

  j = Minimal();
  j["model"]["type"] = "Unigram";
  EXPECT_THAT(Status(j).message(), HasSubstr("\"Unigram\" is not supported"));

  j = Minimal();
  j["normalizer"] = {{"type", "Precompiled"}};
  EXPECT_THAT(Status(j).message(),
              AllOf(HasSubstr("normalizer.type \"Precompiled\""), HasSubstr("NFC")));

  j = Minimal();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Split"}}}}};
  EXPECT_THAT(Status(j).message(), HasSubstr("pre_tokenizer.pretokenizers[0].pattern"));

  j = Minimal();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}};
  EXPECT_THAT(Status(j).message(), HasSubstr("does not compile"));
}

TEST(Tokenizer, ReportsBadVocabularyAndMerges) {
  nlohmann::json j = Minimal();
  j["model"]["merges"] = {"a c"};
  EXPECT_THAT(Status(j).message(), AllOf(HasSubstr("model.merges[0]"), HasSubstr("missing")));
  j["model"]["merges"] = {"abc"};
  EXPECT_THAT(Status(j).message(), HasSubstr("not two tokens"));
  j = Minimal();
  j["model"]["vocab"]["x"] = -1;
  EXPECT_THAT(Status(j).message(), HasSubstr("model.vocab[\"x\"]"));
  j = Minimal();
  j["added_tokens"][0].erase("content");
  EXPECT_THAT(Status(j).message(), HasSubstr("added_tokens[0].content is missing"));
}

TEST(Tokenizer, RejectsInvalidUtf8Input) {
  auto tok = Tokenizer::FromJson(Minimal().dump(), "tok.json");
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ((*tok)->Encode("a\xC3(").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*tok)->Encode("\xED\xA0\x80").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lensd::tokenizer
