// Tokens files hold hashes only; tokens authenticate to their tenant and role, anything else is
// UNAUTHENTICATED, and malformed files name the line.
#include "core/auth.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd {
namespace {

using ::testing::HasSubstr;

TEST(AuthTest, TokensAuthenticateToTheirTenantAndRole) {
  const std::string alice = NewToken();
  const std::string bob = NewToken();
  ASSERT_EQ(alice.size(), 64u);
  ASSERT_NE(alice, bob);
  const std::string file =
      "# team tokens\nalice admin " + HashToken(alice) + "\n\nbob read " + HashToken(bob) + "\n";
  auto store = TokenStore::Parse(file, "tokens.txt");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(store->size(), 2u);
  auto a = store->Authenticate(alice);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->tenant, "alice");
  EXPECT_EQ(a->role, Role::kAdmin);
  auto b = store->Authenticate(bob);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->role, Role::kRead);
  EXPECT_EQ(store->Authenticate("guess").status().code(), absl::StatusCode::kUnauthenticated);
  // The file never holds the token itself.
  EXPECT_EQ(file.find(alice), std::string::npos);
}

TEST(AuthTest, HashIsSha256OfTheToken) {
  // SHA-256("abc") from FIPS 180-2, appendix B.1.
  EXPECT_EQ(HashToken("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AuthTest, MalformedLinesNameTheFileAndLine) {
  auto bad_role = TokenStore::Parse("alice root " + HashToken("x") + "\n", "tokens.txt");
  EXPECT_EQ(bad_role.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_role.status().message(), HasSubstr("tokens.txt:1"));
  EXPECT_THAT(bad_role.status().message(), HasSubstr("read, train, admin"));
  auto plain = TokenStore::Parse("\nalice read secret-token\n", "tokens.txt");
  EXPECT_THAT(plain.status().message(), HasSubstr("tokens.txt:2"));
  EXPECT_THAT(plain.status().message(), HasSubstr("sha256:"));
  const std::string line = "a read " + HashToken("x") + "\n";
  EXPECT_THAT(TokenStore::Parse(line + line, "t").status().message(), HasSubstr("twice"));
}

TEST(AuthTest, BearerHeader) {
  EXPECT_EQ(*BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("Basic abc").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(BearerToken("Bearer ").status().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace lensd
