// Runs the real lensd binary on loopback for end-to-end tests: a tokens file with an admin and a
// reader token, port 0, and a wait until grpc.health.v1 says SERVING.
#ifndef LENSD_TESTS_E2E_LENSD_PROCESS_H_
#define LENSD_TESTS_E2E_LENSD_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lensd::e2e {

class LensdProcess {
 public:
  // Starts lensd with `flags` added (and --state_dir in its own folder unless `flags` name one);
  // fails the calling test (ADD_FAILURE) if it does not serve within 60 s.
  explicit LensdProcess(const std::vector<std::string>& flags);
  ~LensdProcess();  // SIGTERM, then waits

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  // The server's resident set size (VmRSS), in bytes; -1 once it is gone.
  int64_t ResidentBytes() const;
  const std::string& admin_token() const { return admin_token_; }
  const std::string& read_token() const { return read_token_; }
  // What lensd wrote to stderr so far (one JSON line per request).
  std::string Log() const;
  // SIGTERM and wait; the exit status.
  int Stop();
  // grpc.health.v1 status of `service` ("" for the whole server): "SERVING", "NOT_SERVING", or
  // the RPC error ("service name unknown"...).
  std::string Health(const std::string& service = "") const;
  // A unary call of `method` ("/lensd.v1.Models/Tokenize") with `bytes` as the request, as they
  // are (malformed ones included); `reply` (optional) receives the answer's bytes.
  grpc::Status RawCall(const std::string& method, const std::string& bytes,
                       const std::string& token, std::string* reply = nullptr) const;
  // The body of GET /metrics.
  std::string Scrape() const;

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string admin_token_;
  std::string read_token_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Runs a shell command; its output (stdout and stderr together) and exit status (-1 if it did
// not exit normally).
std::pair<std::string, int> RunCommand(const std::string& command);

// A client context with a bearer token and a deadline.
std::unique_ptr<grpc::ClientContext> Context(const std::string& token, double seconds = 60);

}  // namespace lensd::e2e

#endif  // LENSD_TESTS_E2E_LENSD_PROCESS_H_
