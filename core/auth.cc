#include "core/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace lensd {
namespace {

std::string Digest(absl::string_view token) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kTrain:
      return "train";
    case Role::kAdmin:
      return "admin";
  }
  return "read";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  if (name == "read") return Role::kRead;
  if (name == "train") return Role::kTrain;
  if (name == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("role \"", name, "\" is not one of read, train, admin"));
}

std::string HashToken(absl::string_view token) {
  return absl::StrCat("sha256:", absl::BytesToHexString(Digest(token)));
}

std::string NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return "";
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::StatusOr<TokenStore> TokenStore::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("tokens file ", path, " cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<TokenStore> TokenStore::Parse(absl::string_view text, const std::string& source) {
  TokenStore store;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", line_number, ": ", why,
          " (each line is \"<tenant> <role> sha256:<64 hex digits>\"; lensd token makes one)"));
    };
    if (fields.size() != 3) return bad("expected 3 fields");
    const absl::StatusOr<Role> role = ParseRole(fields[1]);
    if (!role.ok()) return bad(role.status().message());
    absl::string_view hex = fields[2];
    if (!absl::ConsumePrefix(&hex, "sha256:") || hex.size() != 64 ||
        !std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
      return bad("the hash must be sha256: and 64 hex digits");
    }
    Entry entry{absl::HexStringToBytes(absl::AsciiStrToLower(hex)),
                {std::string(fields[0]), *role}};
    for (const Entry& e : store.entries_) {
      if (e.digest == entry.digest) return bad("this hash appears twice");
    }
    store.entries_.push_back(std::move(entry));
  }
  return store;
}

absl::StatusOr<Principal> TokenStore::Authenticate(absl::string_view token) const {
  const std::string digest = Digest(token);
  const Entry* match = nullptr;
  // Compare with every entry, in constant time each, so timing reveals nothing about which.
  for (const Entry& e : entries_) {
    if (CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0) match = &e;
  }
  if (match == nullptr) return absl::UnauthenticatedError("the bearer token is not valid");
  return match->principal;
}

absl::StatusOr<std::string> BearerToken(absl::string_view header) {
  absl::string_view value = absl::StripAsciiWhitespace(header);
  if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer ")) {
    return absl::UnauthenticatedError("the authorization metadata must be \"Bearer <token>\"");
  }
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return absl::UnauthenticatedError("the bearer token is empty");
  return std::string(value);
}

}  // namespace lensd
