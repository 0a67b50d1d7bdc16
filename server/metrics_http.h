// A minimal HTTP/1.1 endpoint that answers GET /metrics with a prometheus-cpp Registry in the
// Prometheus text format (prometheus-cpp's TextSerializer writes it).
//
// Why not prometheus-cpp's Exposer: Debian's civetweb 1.15, which Exposer runs on, fails to start
// ("Cannot create threads: error 0") in any process that links libtorch_cpu, which lensd must.
// Thread-safe; one thread answers requests one at a time (scrapes are small and rare).
#ifndef LENSD_SERVER_METRICS_HTTP_H_
#define LENSD_SERVER_METRICS_HTTP_H_

#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace lensd::server {

class MetricsHttp {
 public:
  // Listens on "host:port" (IPv4 or localhost; port 0 picks one). INVALID_ARGUMENT when the
  // address is malformed or cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttp>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsHttp();

  int port() const { return port_; }

 private:
  MetricsHttp(int fd, int port, std::shared_ptr<prometheus::Registry> registry);
  void Loop();
  void Answer(int client);

  int fd_;
  int port_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_METRICS_HTTP_H_
