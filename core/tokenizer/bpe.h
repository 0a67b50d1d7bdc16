// The BPE model of tokenizer.json (byte-level BPE and SentencePiece-style BPE with byte fallback),
// with the merge order of Hugging Face tokenizers: lowest merge rank first, leftmost on ties.
// Thread-safe: immutable after creation except for an internal, locked word cache.
#ifndef LENSD_CORE_TOKENIZER_BPE_H_
#define LENSD_CORE_TOKENIZER_BPE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/tokenizer/normalized_string.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::tokenizer {

// A token produced by a model or matched as an added token. Offsets are byte offsets into the
// normalized piece it came from.
struct Token {
  int32_t id;
  std::string value;
  Offsets offsets;
};

class BpeModel {
 public:
  // Reads the "model" object of tokenizer.json; INVALID_ARGUMENT names the bad field.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model);

  std::vector<Token> Tokenize(absl::string_view word) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id of the model's vocabulary.
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  struct Symbol {
    int32_t id;
    size_t byte_length;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::vector<Symbol> InitialSymbols(absl::string_view word) const;
  void MergeAll(std::vector<Symbol>* symbols) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::optional<std::string> unk_token_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;

  static constexpr size_t kCacheCapacity = 10000;
  mutable absl::Mutex cache_mutex_;
  mutable absl::flat_hash_map<std::string, std::vector<Symbol>> cache_
      ABSL_GUARDED_BY(cache_mutex_);
};

}  // namespace lensd::tokenizer

#endif  // LENSD_CORE_TOKENIZER_BPE_H_
