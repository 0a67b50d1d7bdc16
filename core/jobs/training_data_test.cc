// Training data: paths stay under the data root, malformed files fail with file and line, token
// files are validated against the vocabulary, and the shuffle is fixed by its seed.
#include "core/jobs/training_data.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TrainingDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("lensd-data-" + std::to_string(getpid()));
    fs::remove_all(base_);
    fs::create_directories(base_ / "root" / "sub");
    fs::create_directories(base_ / "elsewhere");
    Write("root/sub/a.jsonl", "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"n\": 2}\n");
    Write("elsewhere/secret.txt", "no");
    fs::create_symlink(base_ / "elsewhere" / "secret.txt", base_ / "root" / "link.txt");
  }
  void TearDown() override { fs::remove_all(base_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(base_ / name, std::ios::binary) << text;
  }
  std::string Path(const std::string& name) const { return (base_ / name).string(); }
  std::string Root() const { return Path("root"); }

  fs::path base_;
};

TEST_F(TrainingDataTest, PathsMustStayUnderTheDataRoot) {
  auto ok = ResolveDataPath(Root(), "sub/a.jsonl");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, fs::canonical(Path("root/sub/a.jsonl")).string());
  EXPECT_TRUE(ResolveDataPath(Root(), Path("root/sub/a.jsonl")).ok());
  for (const std::string& outside : {std::string("../elsewhere/secret.txt"),
                                     Path("elsewhere/secret.txt"), std::string("link.txt")}) {
    const absl::Status s = ResolveDataPath(Root(), outside).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << outside;
    EXPECT_THAT(s.message(), HasSubstr("outside the data root"));
  }
  EXPECT_EQ(ResolveDataPath(Root(), "missing.jsonl").status().code(), absl::StatusCode::kNotFound);
  // Through a folder symlink or a dangling one, a file outside is refused the same way whether
  // it exists or not (no probing of the disk), and the root's absolute path is not shown.
  fs::create_symlink(base_ / "elsewhere", base_ / "root" / "out");
  fs::create_symlink(base_ / "elsewhere" / "nothing.txt", base_ / "root" / "dangling.txt");
  for (const std::string& probe : {std::string("out/secret.txt"), std::string("out/missing.txt"),
                                   std::string("dangling.txt")}) {
    const absl::Status s = ResolveDataPath(Root(), probe).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << probe;
    EXPECT_EQ(s.message(), probe + " is outside the data root");
  }
  EXPECT_EQ(ResolveDataPath(Root(), "sub").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveDataPath("", "a.jsonl").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(TrainingDataTest, ReadsJsonlAndTextAndNamesTheBadLine) {
  auto docs = ReadDocuments(Path("root/sub/a.jsonl"), "text");
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_EQ(*docs, (std::vector<std::string>{"one", "two"}));
  Write("root/whole.txt", "line one\nline two\n");
  docs = ReadDocuments(Path("root/whole.txt"), "text");
  ASSERT_TRUE(docs.ok());
  EXPECT_EQ(*docs, (std::vector<std::string>{"line one\nline two\n"}));

  Write("root/bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": 3}\n");
  EXPECT_THAT(ReadDocuments(Path("root/bad.jsonl"), "text").status().message(),
              HasSubstr("bad.jsonl:3: \"text\" is not a string"));
  Write("root/bad2.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n");
  EXPECT_THAT(ReadDocuments(Path("root/bad2.jsonl"), "text").status().message(),
              HasSubstr("bad2.jsonl:2: not valid JSON"));
  EXPECT_THAT(ReadDocuments(Path("root/sub/a.jsonl"), "body").status().message(),
              HasSubstr("a.jsonl:1: no \"body\" field"));
  EXPECT_EQ(ReadDocuments(Path("root/x.csv"), "text").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TrainingDataTest, TokenFilesAreCheckedAndCut) {
  std::vector<uint16_t> ids = {1, 2, 3, 4, 5, 6, 7};
  Write("root/t.u16", std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * 2));
  auto chunks = ChunkTokenFile(Path("root/t.u16"), 3, 10);
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  EXPECT_EQ(chunks->num_chunks(), 2);  // the short tail (7) is dropped
  EXPECT_EQ(chunks->tokens, (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_THAT(ChunkTokenFile(Path("root/t.u16"), 3, 5).status().message(),
              HasSubstr("token 4 is 5, outside the vocabulary of 5"));
  Write("root/odd.u32", "abcdef");
  EXPECT_THAT(ChunkTokenFile(Path("root/odd.u32"), 3, 10).status().message(),
              HasSubstr("6 bytes is not a whole number of 4-byte token ids"));
}

TEST(ShuffledOrderTest, IsAPermutationFixedByTheSeed) {
  const std::vector<int64_t> a = ShuffledOrder(1000, 42);
  EXPECT_EQ(a, ShuffledOrder(1000, 42));
  EXPECT_NE(a, ShuffledOrder(1000, 43));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
}

}  // namespace
}  // namespace lensd
