// Training and evaluation data as tuned-lens prepares it (tuned_lens/data.py chunk_and_tokenize,
// tuned-lens.md §2.4): documents joined into one string, prefixed and separated by the EOS token's
// text, tokenized, and cut into chunks of exactly `chunk_len` tokens, per batch of 2048 documents,
// dropping each batch's short last chunk. Pre-tokenized files are cut the same way (one batch).
//
// Sources, all read from under a data root the server is configured with (paths that leave it,
// by "..", an absolute path elsewhere or a symbolic link, are refused):
//   .jsonl         one JSON object per line; the text is in `text_field` ("text")
//   .txt           the whole file is one document
//   .u16, .u32     token ids, little-endian uint16 or uint32
// or texts given inline. Malformed input fails with its file and line number.
// Torch-free; pure functions.
#ifndef LENSD_CORE_JOBS_TRAINING_DATA_H_
#define LENSD_CORE_JOBS_TRAINING_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer.h"

namespace lensd {

struct ChunkedData {
  int64_t chunk_len = 0;
  std::vector<int32_t> tokens;  // num_chunks() x chunk_len, row-major
  // (tokens / UTF-8 bytes) / ln 2 over the joined texts before tails were dropped: nats per token
  // times this is bits per byte. 0 for pre-tokenized data.
  double nats_to_bits_per_byte = 0;

  int64_t num_chunks() const {
    return chunk_len == 0 ? 0 : static_cast<int64_t>(tokens.size()) / chunk_len;
  }
};

// `path` (relative to `root`, or absolute inside it) resolved with symbolic links followed.
// PERMISSION_DENIED when it lies outside the root; NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ResolveDataPath(const std::string& root, const std::string& path);

// The documents of a .jsonl or .txt file. INVALID_ARGUMENT "<file>:<line>: ..." for a line that
// is not a JSON object with a string `text_field`, and for other extensions.
absl::StatusOr<std::vector<std::string>> ReadDocuments(const std::string& path,
                                                       const std::string& text_field);

// Chunks documents as tuned-lens does. INVALID_ARGUMENT when no complete chunk results.
absl::StatusOr<ChunkedData> ChunkDocuments(const std::vector<std::string>& documents,
                                           const tokenizer::Tokenizer& tokenizer,
                                           const std::string& eos_text, int64_t chunk_len,
                                           int64_t batch_documents = 2048);

// Chunks a .u16 or .u32 token file; ids must be below `vocab_size` (INVALID_ARGUMENT naming the
// first offending position).
absl::StatusOr<ChunkedData> ChunkTokenFile(const std::string& path, int64_t chunk_len,
                                           int64_t vocab_size);

// A permutation of 0..n-1 fixed by `seed` (the same on every machine and run).
std::vector<int64_t> ShuffledOrder(int64_t n, uint64_t seed);

}  // namespace lensd

#endif  // LENSD_CORE_JOBS_TRAINING_DATA_H_
