#include "core/engine/formats/safetensors_header.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

using ::testing::HasSubstr;

// A file image: 8-byte little-endian length, the header text, then `data_bytes` zero bytes.
std::string File(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + std::string(data_bytes, '\0');
}

absl::StatusOr<SafetensorsHeader> Parse(const std::string& file) {
  return ParseSafetensorsHeader(file, file.size());
}

TEST(SafetensorsHeader, ParsesTensorsAndMetadata) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})";
  auto parsed = Parse(File(header, 32));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->data_start, 8 + header.size());
  ASSERT_EQ(parsed->tensors.size(), 2u);
  EXPECT_EQ(parsed->tensors.at("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(parsed->tensors.at("b").dtype, FileDtype::kBF16);
  EXPECT_EQ(parsed->metadata.at("format"), "pt");
}

TEST(SafetensorsHeader, RejectsFileShorterThanLengthField) {
  EXPECT_THAT(Parse("abc").status().message(), HasSubstr("shorter than the 8-byte header length"));
}

TEST(SafetensorsHeader, RejectsHeaderLongerThanFile) {
  std::string file = File("{}", 0);
  file[0] = 100;  // claims a 100-byte header
  EXPECT_THAT(Parse(file).status().message(), HasSubstr("exceeds the file"));
}

TEST(SafetensorsHeader, RejectsMalformedJson) {
  const auto status = Parse(File(R"({"a": {"dtype": )", 0)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("JSON"));
}

TEST(SafetensorsHeader, RejectsUnknownDtype) {
  const auto status =
      Parse(File(R"({"w":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", 1)).status();
  EXPECT_THAT(status.message(), HasSubstr("tensor \"w\""));
  EXPECT_THAT(status.message(), HasSubstr("dtype"));
}

TEST(SafetensorsHeader, RejectsNegativeShape) {
  EXPECT_THAT(Parse(File(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4))
                  .status()
                  .message(),
              HasSubstr("negative"));
}

TEST(SafetensorsHeader, RejectsTruncatedData) {
  const auto status =
      Parse(File(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 10)).status();
  EXPECT_THAT(status.message(), HasSubstr("tensor \"w\""));
  EXPECT_THAT(status.message(), HasSubstr("truncated"));
}

TEST(SafetensorsHeader, RejectsSizeThatDisagreesWithShape) {
  EXPECT_THAT(Parse(File(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16))
                  .status()
                  .message(),
              HasSubstr("needs 12"));
}

TEST(SafetensorsHeader, RejectsOverlappingTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_THAT(Parse(File(header, 12)).status().message(), HasSubstr("overlap"));
}

TEST(SafetensorsHeader, RejectsNonObjectHeaderAndBadMetadata) {
  EXPECT_FALSE(Parse(File("[1,2]", 0)).ok());
  EXPECT_THAT(Parse(File(R"({"__metadata__":{"k":1}})", 0)).status().message(),
              HasSubstr("__metadata__.k"));
}

}  // namespace
}  // namespace lensd::engine
