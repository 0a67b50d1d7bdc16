// Training-data chunking against tuned-lens's own chunk_and_tokenize (tests/parity/
// data_reference.py): 4,500 documents in 3 batches of up to 2,048, with the demo model's
// tokenizer, 64-token chunks: the same chunks in the same order (exact) and the same nats to
// bits-per-byte ratio (1e-12 relative).
#include <fstream>
#include <string>
#include <vector>

#include "core/jobs/training_data.h"
#include "core/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd {
namespace {

TEST(DataParityTest, ChunksMatchTunedLensChunkAndTokenize) {
  const std::string dir = std::string(LENSD_TEST_BINARY_DIR) + "/parity/data";
  std::ifstream in(dir + "/data.json");
  const nlohmann::json expected = nlohmann::json::parse(in);
  auto tokenizer = tokenizer::Tokenizer::FromFile(std::string(LENSD_TEST_SOURCE_DIR) +
                                                  "/deploy/models/kjv-gpt2/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto documents = ReadDocuments(dir + "/docs.jsonl", "text");
  ASSERT_TRUE(documents.ok()) << documents.status();
  ASSERT_EQ(documents->size(), 4500u);
  auto chunked = ChunkDocuments(*documents, **tokenizer, "<|endoftext|>", 64);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  auto reference = ChunkTokenFile(dir + "/chunks.u32", 64, (*tokenizer)->vocab_size());
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ(chunked->num_chunks(), expected["num_chunks"].get<int64_t>());
  EXPECT_EQ(chunked->tokens, reference->tokens);
  const double ratio = expected["nats_to_bits_per_byte"];
  EXPECT_NEAR(chunked->nats_to_bits_per_byte, ratio, 1e-12 * ratio);
}

}  // namespace
}  // namespace lensd
