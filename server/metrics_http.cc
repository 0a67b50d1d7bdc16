#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lensd::server {
namespace {

constexpr unsigned kIdleSeconds = 5;
constexpr unsigned kConnections = 256;
constexpr unsigned kConnectionsPerAddress = 32;
constexpr size_t kConnectionMemory = 32 << 10;

MHD_Result Reply(MHD_Connection* connection, unsigned code, const std::string& type,
                 const std::string& body) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type.c_str());
  const MHD_Result queued = MHD_queue_response(connection, code, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url, const char* method,
                  const char* /*version*/, const char* /*upload_data*/, size_t* upload_size,
                  void** /*state*/) {
  const auto* http = static_cast<const MetricsHttp*>(cls);
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 || *upload_size != 0) {
    return Reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                 "lensd serves metrics at GET /metrics\n");
  }
  if (std::strcmp(url, "/metrics") != 0) {
    return Reply(connection, MHD_HTTP_NOT_FOUND, "text/plain",
                 "lensd serves metrics at GET /metrics\n");
  }
  return Reply(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", http->Body());
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttp>> MetricsHttp::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry,
    std::function<void()> before_scrape) {
  const size_t colon = address.rfind(':');
  int port = 0;
  const std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535 ||
      inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_address \"", address, "\" is not <IPv4 address>:<port> (e.g. 127.0.0.1:9464)"));
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::unique_ptr<MetricsHttp> http(new MetricsHttp(std::move(registry), std::move(before_scrape)));
  errno = 0;
  http->daemon_ =
      MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, static_cast<uint16_t>(port),
                       nullptr, nullptr, &Handle, http.get(), MHD_OPTION_SOCK_ADDR, &addr,
                       MHD_OPTION_CONNECTION_TIMEOUT, kIdleSeconds, MHD_OPTION_CONNECTION_LIMIT,
                       kConnections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, kConnectionsPerAddress,
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_END);
  if (http->daemon_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_address ", address,
                     " cannot be listened on: ", errno != 0 ? std::strerror(errno) : "refused"));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(http->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  http->port_ = info != nullptr ? info->port : port;
  return http;
}

MetricsHttp::~MetricsHttp() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

std::string MetricsHttp::Body() const {
  if (before_scrape_) before_scrape_();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace lensd::server
