#include "core/jobs/training_data.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace lensd {
namespace {

namespace fs = std::filesystem;

bool Inside(const fs::path& root, const fs::path& path) {
  auto r = root.begin();
  auto p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (p == path.end() || *r != *p) return false;
  }
  return true;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return text.str();
}

}  // namespace

absl::StatusOr<std::string> ResolveDataPath(const std::string& root, const std::string& path) {
  if (root.empty()) {
    return absl::FailedPreconditionError(
        "this server has no data root (lensd --data_root): give the texts inline");
  }
  std::error_code ec;
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec)
    return absl::FailedPreconditionError(absl::StrCat("data root ", root, ": ", ec.message()));
  if (path.empty()) return absl::InvalidArgumentError("path: give a file under the data root");
  const fs::path wanted =
      (fs::path(path).is_absolute() ? fs::path(path) : canonical_root / path).lexically_normal();
  // Outside by its spelling, or through a symlink (a folder's or the file's own, dangling or
  // not): refused before anything is said about whether the file exists, and without the root's
  // absolute path.
  const auto outside = [&] {
    return absl::PermissionDeniedError(absl::StrCat(path, " is outside the data root"));
  };
  if (!Inside(canonical_root, wanted)) return outside();
  fs::path where = fs::weakly_canonical(wanted, ec);
  const auto is_link = [](const fs::path& p) {
    std::error_code missing;  // a path that does not exist is no link
    return fs::symlink_status(p, missing).type() == fs::file_type::symlink;
  };
  for (int hops = 0; !ec && hops < 40 && is_link(where); ++hops) {
    const fs::path target = fs::read_symlink(where, ec);
    where = fs::weakly_canonical(
        target.is_absolute() ? target : (where.parent_path() / target).lexically_normal(), ec);
  }
  if (ec || !Inside(canonical_root, where)) return outside();
  const fs::path resolved = fs::canonical(wanted, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": not found under the data root"));
  if (!Inside(canonical_root, resolved)) return outside();
  if (!fs::is_regular_file(resolved)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a file"));
  }
  return resolved.string();
}

absl::StatusOr<std::vector<std::string>> ReadDocuments(const std::string& path,
                                                       const std::string& text_field) {
  std::vector<std::string> documents;
  if (absl::EndsWith(path, ".txt")) {
    auto text = ReadWholeFile(path);
    if (!text.ok()) return text.status();
    documents.push_back(*std::move(text));
    return documents;
  }
  if (!absl::EndsWith(path, ".jsonl")) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": want .jsonl, .txt, .u16 or .u32 (by extension)"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
    const auto at = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": ", what));
    };
    if (json.is_discarded()) return at("not valid JSON");
    if (!json.is_object()) return at("not a JSON object");
    const auto it = json.find(text_field);
    if (it == json.end()) return at(absl::StrCat("no \"", text_field, "\" field"));
    if (!it->is_string()) return at(absl::StrCat("\"", text_field, "\" is not a string"));
    documents.push_back(it->get<std::string>());
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return documents;
}

absl::StatusOr<ChunkedData> ChunkDocuments(const std::vector<std::string>& documents,
                                           const tokenizer::Tokenizer& tokenizer,
                                           const std::string& eos_text, int64_t chunk_len,
                                           int64_t batch_documents) {
  if (chunk_len < 2) return absl::InvalidArgumentError("seq_len: must be at least 2");
  ChunkedData out;
  out.chunk_len = chunk_len;
  int64_t total_tokens = 0;
  int64_t total_bytes = 0;
  for (size_t first = 0; first < documents.size(); first += static_cast<size_t>(batch_documents)) {
    const size_t last = std::min(documents.size(), first + static_cast<size_t>(batch_documents));
    std::string joined;
    for (size_t d = first; d < last; ++d) absl::StrAppend(&joined, eos_text, documents[d]);
    auto encoding = tokenizer.Encode(joined);
    if (!encoding.ok()) return encoding.status();
    const std::vector<int32_t>& ids = encoding->ids;
    total_tokens += static_cast<int64_t>(ids.size());
    total_bytes += static_cast<int64_t>(joined.size());
    // tuned-lens drops the last chunk of every batch, full or not.
    const int64_t chunks = (static_cast<int64_t>(ids.size()) + chunk_len - 1) / chunk_len - 1;
    if (chunks > 0) {
      out.tokens.insert(out.tokens.end(), ids.begin(), ids.begin() + chunks * chunk_len);
    }
  }
  if (out.tokens.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the data makes no complete chunk of ", chunk_len, " tokens (", total_tokens,
                     " tokens in all, and each batch's last chunk is dropped): supply more text"));
  }
  out.nats_to_bits_per_byte =
      static_cast<double>(total_tokens) / static_cast<double>(total_bytes) / std::log(2.0);
  return out;
}

absl::StatusOr<ChunkedData> ChunkTokenFile(const std::string& path, int64_t chunk_len,
                                           int64_t vocab_size) {
  if (chunk_len < 2) return absl::InvalidArgumentError("seq_len: must be at least 2");
  const size_t width = absl::EndsWith(path, ".u16") ? 2 : absl::EndsWith(path, ".u32") ? 4 : 0;
  if (width == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": want .u16 or .u32"));
  auto bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() % width != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", bytes->size(), " bytes is not a whole number of ", width, "-byte token ids"));
  }
  const int64_t n = static_cast<int64_t>(bytes->size() / width);
  const int64_t chunks = n / chunk_len;
  if (chunks == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", n, " tokens make no complete chunk of ", chunk_len));
  }
  ChunkedData out;
  out.chunk_len = chunk_len;
  out.tokens.resize(static_cast<size_t>(chunks * chunk_len));
  const auto* raw = reinterpret_cast<const unsigned char*>(bytes->data());
  for (size_t i = 0; i < out.tokens.size(); ++i) {
    uint32_t id = 0;
    for (size_t b = 0; b < width; ++b) id |= static_cast<uint32_t>(raw[i * width + b]) << (8 * b);
    if (id >= static_cast<uint64_t>(vocab_size)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": token ", i, " is ", id,
                                                     ", outside the vocabulary of ", vocab_size));
    }
    out.tokens[i] = static_cast<int32_t>(id);
  }
  return out;
}

std::vector<int64_t> ShuffledOrder(int64_t n, uint64_t seed) {
  // std::mt19937_64's sequence is fixed by the standard (unlike the distributions), so the order
  // is the same everywhere.
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

}  // namespace lensd
