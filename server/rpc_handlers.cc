#include "server/rpc_handlers.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace lensd::server {

int MethodIndex(const char* service, const char* method) {
  const google::protobuf::ServiceDescriptor* s =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
  const google::protobuf::MethodDescriptor* m =
      s == nullptr ? nullptr : s->FindMethodByName(method);
  if (m == nullptr) {
    std::fprintf(stderr, "lensd: no method %s in service %s\n", method, service);
    std::abort();
  }
  return m->index();
}

absl::Status EscapedException(const char* method, const std::exception* e) {
  const std::string what = e != nullptr ? e->what() : "an exception that is not a std::exception";
  std::fprintf(stderr, "lensd: %s threw %s\n", method, what.c_str());
  return absl::InternalError(absl::StrCat(method, " failed inside lensd (", what,
                                          "); this is a bug: please report it with the request"));
}

}  // namespace lensd::server
