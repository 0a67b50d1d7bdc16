#include "core/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "core/tokenizer/added_vocabulary.h"
#include "core/tokenizer/bpe.h"
#include "core/tokenizer/components.h"
#include "core/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace lensd::tokenizer {
namespace {

absl::Status InFile(absl::string_view source, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(source, ": ", status.message()));
}

// tokenizers' BytesToCharOffsetConverter.
class ByteToCharOffsets {
 public:
  explicit ByteToCharOffsets(absl::string_view text) : char_of_byte_(text.size()) {
    size_t index = 0;
    for (const CodePoint& cp : DecodeUtf8(text)) {
      for (size_t i = 0; i < cp.byte_length; ++i) char_of_byte_[cp.byte_offset + i] = index;
      ++index;
    }
  }
  Offsets Convert(Offsets bytes) const {
    if (bytes.first >= char_of_byte_.size()) return bytes;
    const size_t start = char_of_byte_[bytes.first];
    if (bytes.second < char_of_byte_.size()) return {start, char_of_byte_[bytes.second]};
    const size_t last = bytes.second >= 1 ? char_of_byte_[bytes.second - 1] : start;
    return {start, last + 1};
  }

 private:
  std::vector<size_t> char_of_byte_;
};

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot open tokenizer file"));
  std::stringstream text;
  text << file.rdbuf();
  return FromJson(text.str(), path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(absl::string_view json,
                                                               absl::string_view source) {
  auto parsed = json_fields::Parse(json);
  if (!parsed.ok()) return InFile(source, parsed.status());
  const nlohmann::json& root = *parsed;
  if (!root.is_object())
    return InFile(source, absl::InvalidArgumentError("top level must be an object"));
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  const auto stage = [&](const char* key) -> const nlohmann::json* {
    const auto it = root.find(key);
    return it == root.end() || it->is_null() ? nullptr : &*it;
  };
  const auto build = [&](auto& field, const char* key, auto factory) -> absl::Status {
    if (const nlohmann::json* j = stage(key)) {
      auto built = factory(*j, key);
      if (!built.ok()) return InFile(source, built.status());
      field = *std::move(built);
    }
    return absl::OkStatus();
  };
  LENSD_RETURN_IF_ERROR(build(tok->normalizer_, "normalizer", NormalizerFromJson));
  LENSD_RETURN_IF_ERROR(build(tok->pre_tokenizer_, "pre_tokenizer", PreTokenizerFromJson));
  LENSD_RETURN_IF_ERROR(build(tok->post_processor_, "post_processor", PostProcessorFromJson));
  LENSD_RETURN_IF_ERROR(build(tok->decoder_, "decoder", DecoderFromJson));

  const nlohmann::json* model = stage("model");
  if (model == nullptr) return InFile(source, absl::InvalidArgumentError("model is missing"));
  const std::string type = model->value("type", "BPE");
  if (type != "BPE") {
    return InFile(source,
                  absl::InvalidArgumentError(absl::StrCat(
                      "model.type \"", type, "\" is not supported; lensd reads BPE models")));
  }
  auto bpe = BpeModel::FromJson(*model);
  if (!bpe.ok()) return InFile(source, bpe.status());
  tok->model_ = *std::move(bpe);

  auto added = AddedVocabulary::FromJson(root.value("added_tokens", nlohmann::json()),
                                         tok->normalizer_.get());
  if (!added.ok()) return InFile(source, added.status());
  tok->added_ = std::make_unique<AddedVocabulary>(*std::move(added));

  tok->vocab_size_ = tok->model_->vocab_size();
  for (const AddedToken& t : tok->added_->tokens()) {
    tok->vocab_size_ = std::max(tok->vocab_size_, t.id + 1);
  }
  return tok;
}

absl::StatusOr<Encoding> Tokenizer::Encode(absl::string_view text, bool add_special_tokens) const {
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError("text is not valid UTF-8");
  }
  PreTokenized pieces = added_->ExtractAndNormalize(text, normalizer_.get());
  if (pre_tokenizer_) pre_tokenizer_->PreTokenize(&pieces);

  EncodingParts parts;
  const ByteToCharOffsets to_chars(text);
  for (Piece& piece : pieces) {
    if (!piece.tokens) piece.tokens = model_->Tokenize(piece.normalized.get());
    const size_t shift = piece.normalized.OffsetsOriginal().first;
    for (Token& token : *piece.tokens) {
      Offsets bytes = token.offsets;
      if (auto original = piece.normalized.NormalizedToOriginal(bytes.first, bytes.second)) {
        bytes = {shift + original->first, shift + original->second};
      }
      parts.ids.push_back(token.id);
      parts.tokens.push_back(std::move(token.value));
      parts.offsets.push_back(to_chars.Convert(bytes));
      parts.special_tokens_mask.push_back(0);
    }
  }
  if (post_processor_) post_processor_->Process(&parts, add_special_tokens);
  return Encoding{std::move(parts.ids), std::move(parts.tokens), std::move(parts.offsets),
                  std::move(parts.special_tokens_mask)};
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    if (const AddedToken* added = added_->FindById(id)) {
      if (!(skip_special_tokens && added->special)) tokens.push_back(added->content);
      continue;
    }
    const std::string* token = model_->IdToToken(id);
    if (token == nullptr) continue;
    if (skip_special_tokens) {
      const AddedToken* added = added_->FindByContent(*token);
      if (added != nullptr && added->special) continue;
    }
    tokens.push_back(*token);
  }
  if (!decoder_) return absl::StrJoin(tokens, " ");
  return absl::StrJoin(decoder_->DecodeChain(std::move(tokens)), "");
}

std::optional<int32_t> Tokenizer::TokenToId(absl::string_view token) const {
  if (const AddedToken* added = added_->FindByContent(token)) return added->id;
  return model_->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* added = added_->FindById(id)) return added->content;
  if (const std::string* token = model_->IdToToken(id)) return *token;
  return std::nullopt;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const AddedToken* added = added_->FindById(id);
  return added != nullptr && added->special;
}

}  // namespace lensd::tokenizer
