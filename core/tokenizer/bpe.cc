#include "core/tokenizer/bpe.h"

#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "core/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const nlohmann::json& merge,
                                                               size_t index) {
  if (merge.is_string()) {
    const std::string& text = merge.get_ref<const std::string&>();
    const size_t space = text.find(' ', 1);
    if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", index, "] = \"", text,
                                                     "\" is not two tokens separated by a space"));
    }
    return std::make_pair(text.substr(0, space), text.substr(space + 1));
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return std::make_pair(merge[0].get<std::string>(), merge[1].get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model.merges[", index, "] is neither \"a b\" nor [\"a\", \"b\"]"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model) {
  auto bpe = std::make_unique<BpeModel>();
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError("model.vocab is missing or not an object");
  }
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.vocab[\"", token, "\"] is not a non-negative integer id"));
    }
    bpe->vocab_[token] = id.get<int32_t>();
    max_id = std::max(max_id, id.get<int32_t>());
  }
  bpe->id_to_token_.resize(static_cast<size_t>(max_id) + 1);
  for (const auto& [token, id] : bpe->vocab_) bpe->id_to_token_[static_cast<size_t>(id)] = token;

  LENSD_ASSIGN_OR_RETURN(bpe->unk_token_, json_fields::OptionalString(model, "unk_token", "model"));
  std::optional<std::string> prefix;
  std::optional<std::string> suffix;
  LENSD_ASSIGN_OR_RETURN(prefix,
                         json_fields::OptionalString(model, "continuing_subword_prefix", "model"));
  LENSD_ASSIGN_OR_RETURN(suffix, json_fields::OptionalString(model, "end_of_word_suffix", "model"));
  bpe->continuing_subword_prefix_ = prefix.value_or("");
  bpe->end_of_word_suffix_ = suffix.value_or("");
  LENSD_ASSIGN_OR_RETURN(bpe->fuse_unk_, json_fields::Bool(model, "fuse_unk", false, "model"));
  LENSD_ASSIGN_OR_RETURN(bpe->byte_fallback_,
                         json_fields::Bool(model, "byte_fallback", false, "model"));
  LENSD_ASSIGN_OR_RETURN(bpe->ignore_merges_,
                         json_fields::Bool(model, "ignore_merges", false, "model"));
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() && dropout->get<double>() > 0.0) {
    return absl::InvalidArgumentError(
        "model.dropout is set: BPE dropout randomizes inference and is not supported");
  }

  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return absl::InvalidArgumentError("model.merges is missing or not an array");
  }
  const size_t prefix_length = bpe->continuing_subword_prefix_.size();
  for (size_t i = 0; i < merges->size(); ++i) {
    auto pair = ParseMerge((*merges)[i], i);
    if (!pair.ok()) return pair.status();
    const auto& [a, b] = *pair;
    const auto a_id = bpe->vocab_.find(a);
    const auto b_id = bpe->vocab_.find(b);
    const std::string merged =
        a + (prefix_length > 0 && b.compare(0, prefix_length, bpe->continuing_subword_prefix_) == 0
                 ? b.substr(prefix_length)
                 : b);
    const auto new_id = bpe->vocab_.find(merged);
    if (a_id == bpe->vocab_.end() || b_id == bpe->vocab_.end() || new_id == bpe->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", i, "] (\"", a, "\", \"", b,
                                                     "\") uses a token missing from model.vocab"));
    }
    bpe->merges_.insert_or_assign(PairKey(a_id->second, b_id->second),
                                  Merge{static_cast<int32_t>(i), new_id->second});
  }
  return bpe;
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
  const std::string& token = id_to_token_[static_cast<size_t>(id)];
  return token.empty() && vocab_.find(token) == vocab_.end() ? nullptr : &token;
}

std::vector<BpeModel::Symbol> BpeModel::InitialSymbols(absl::string_view word) const {
  std::vector<Symbol> symbols;
  std::optional<Symbol> unk;  // pending unknown run (fused when fuse_unk)
  const int32_t unk_id = unk_token_ ? TokenToId(*unk_token_).value_or(-1) : -1;
  const std::vector<CodePoint> chars = DecodeUtf8(word);
  for (size_t i = 0; i < chars.size(); ++i) {
    std::string piece(word.substr(chars[i].byte_offset, chars[i].byte_length));
    if (i > 0) piece = continuing_subword_prefix_ + piece;
    if (i + 1 == chars.size()) piece += end_of_word_suffix_;
    if (const auto id = vocab_.find(piece); id != vocab_.end()) {
      if (unk) symbols.push_back(*unk), unk.reset();
      symbols.push_back({id->second, chars[i].byte_length});
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> byte_ids;
      for (const char byte : piece) {
        const auto id = vocab_.find(absl::StrFormat("<0x%02X>", static_cast<unsigned char>(byte)));
        if (id == vocab_.end()) break;
        byte_ids.push_back(id->second);
      }
      if (byte_ids.size() == piece.size()) {
        for (const int32_t id : byte_ids) symbols.push_back({id, 1});
        continue;
      }
    }
    if (unk_id >= 0) {
      if (unk && fuse_unk_) {
        unk->byte_length += chars[i].byte_length;
      } else {
        if (unk) symbols.push_back(*unk);
        unk = Symbol{unk_id, chars[i].byte_length};
      }
    }
  }
  if (unk) symbols.push_back(*unk);
  return symbols;
}

void BpeModel::MergeAll(std::vector<Symbol>* symbols) const {
  struct Node {
    Symbol symbol;
    int prev;
    int next;
  };
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t new_id;
    bool operator<(const Candidate& other) const {  // max-heap: lowest rank, then lowest pos
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  const int n = static_cast<int>(symbols->size());
  std::vector<Node> nodes(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    nodes[static_cast<size_t>(i)] = {(*symbols)[static_cast<size_t>(i)], i - 1,
                                     i + 1 < n ? i + 1 : -1};
  std::priority_queue<Candidate> queue;
  const auto push_pair = [&](int left) {
    const Node& l = nodes[static_cast<size_t>(left)];
    if (l.next < 0) return;
    const auto it =
        merges_.find(PairKey(l.symbol.id, nodes[static_cast<size_t>(l.next)].symbol.id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int i = 0; i + 1 < n; ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Node& left = nodes[static_cast<size_t>(top.pos)];
    if (left.symbol.byte_length == 0 || left.next < 0) continue;
    Node& right = nodes[static_cast<size_t>(left.next)];
    const auto it = merges_.find(PairKey(left.symbol.id, right.symbol.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale entry
    left.symbol = {top.new_id, left.symbol.byte_length + right.symbol.byte_length};
    right.symbol.byte_length = 0;
    left.next = right.next;
    if (right.next >= 0) nodes[static_cast<size_t>(right.next)].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  symbols->clear();
  for (const Node& node : nodes) {
    if (node.symbol.byte_length > 0) symbols->push_back(node.symbol);
  }
}

std::vector<Token> BpeModel::Tokenize(absl::string_view word) const {
  if (word.empty()) return {};
  if (ignore_merges_) {
    if (const auto id = vocab_.find(word); id != vocab_.end()) {
      return {Token{id->second, std::string(word), {0, word.size()}}};
    }
  }
  std::vector<Symbol> symbols;
  bool cached = false;
  {
    absl::MutexLock lock(&cache_mutex_);
    if (const auto it = cache_.find(word); it != cache_.end()) symbols = it->second, cached = true;
  }
  if (!cached) {
    symbols = InitialSymbols(word);
    MergeAll(&symbols);
    absl::MutexLock lock(&cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(word), symbols);
  }
  std::vector<Token> tokens;
  tokens.reserve(symbols.size());
  size_t offset = 0;
  for (const Symbol& s : symbols) {
    tokens.push_back(
        {s.id, id_to_token_[static_cast<size_t>(s.id)], {offset, offset + s.byte_length}});
    offset += s.byte_length;
  }
  return tokens;
}

}  // namespace lensd::tokenizer
