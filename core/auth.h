// Bearer-token authentication and roles. The tokens file stores only SHA-256 hashes, one token
// per line:
//
//   # comment
//   <tenant> <role> sha256:<64 hex digits>
//
// Roles nest: admin > train > read. Tokens are compared in constant time against every entry.
// Thread-safe (immutable after Load).
#ifndef LENSD_CORE_AUTH_H_
#define LENSD_CORE_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd {

enum class Role { kRead = 0, kTrain = 1, kAdmin = 2 };

const char* RoleName(Role role);
// INVALID_ARGUMENT for anything but read, train, admin.
absl::StatusOr<Role> ParseRole(absl::string_view name);

struct Principal {
  std::string tenant;
  Role role = Role::kRead;
};

// "sha256:<hex>" of the token's bytes.
std::string HashToken(absl::string_view token);
// A new random token (32 bytes from the OS's CSPRNG, hex).
std::string NewToken();

class TokenStore {
 public:
  // INVALID_ARGUMENT naming the file and line for a malformed line or a duplicate hash;
  // NOT_FOUND when the file cannot be read.
  static absl::StatusOr<TokenStore> Load(const std::string& path);
  static absl::StatusOr<TokenStore> Parse(absl::string_view text, const std::string& source);

  // The token's principal; UNAUTHENTICATED for an unknown token.
  absl::StatusOr<Principal> Authenticate(absl::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string digest;  // 32 raw bytes
    Principal principal;
  };
  std::vector<Entry> entries_;
};

// Reads "Bearer <token>" from an authorization header value; UNAUTHENTICATED otherwise.
absl::StatusOr<std::string> BearerToken(absl::string_view header);

}  // namespace lensd

#endif  // LENSD_CORE_AUTH_H_
