// The /metrics endpoint: GNU libmicrohttpd answers GET /metrics with a prometheus-cpp Registry in
// the Prometheus text format (prometheus-cpp's TextSerializer writes it).
//
// Monitoring must not be blockable: one event-driven thread (epoll) serves every connection at
// once, so a client that sends its request a byte at a time holds only its own connection; a
// connection idle for 5 s is closed, at most 256 are open (32 per client address), and each
// may use 32 KiB.
//
// Why not prometheus-cpp's Exposer: Debian's civetweb 1.15, which Exposer runs on, fails to start
// ("Cannot create threads: error 0") in any process that links libtorch_cpu, which lensd must.
// Thread-safe.
#ifndef LENSD_SERVER_METRICS_HTTP_H_
#define LENSD_SERVER_METRICS_HTTP_H_

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct MHD_Daemon;

namespace lensd::server {

class MetricsHttp {
 public:
  // Listens on "host:port" (IPv4 or localhost; port 0 picks one). INVALID_ARGUMENT when the
  // address is malformed or cannot be bound.
  // `before_scrape` (may be empty) runs before each answer is collected, on the serving thread.
  static absl::StatusOr<std::unique_ptr<MetricsHttp>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry,
      std::function<void()> before_scrape = {});
  ~MetricsHttp();
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;

  int port() const { return port_; }
  // The body of GET /metrics now.
  std::string Body() const;

 private:
  MetricsHttp(std::shared_ptr<prometheus::Registry> registry, std::function<void()> before_scrape)
      : registry_(std::move(registry)), before_scrape_(std::move(before_scrape)) {}

  std::shared_ptr<prometheus::Registry> registry_;
  std::function<void()> before_scrape_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_METRICS_HTTP_H_
