#include "tests/e2e/lensd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/auth.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace lensd::e2e {
namespace fs = std::filesystem;

std::pair<std::string, int> RunCommand(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {"cannot run " + command, -1};
  std::string out;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  const int status = pclose(pipe);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& token, double seconds) {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  return context;
}

LensdProcess::LensdProcess(const std::vector<std::string>& flags) {
  dir_ = fs::temp_directory_path() /
         ("lensd-e2e-" + std::to_string(getpid()) + "-" + std::to_string(std::rand()));
  fs::create_directories(dir_);
  admin_token_ = NewToken();
  read_token_ = NewToken();
  std::ofstream(dir_ + "/tokens.txt") << "# e2e\nadmin admin " << HashToken(admin_token_)
                                      << "\nreader read " << HashToken(read_token_) << "\n";
  std::vector<std::string> args = {LENSD_BINARY,
                                   "--address=127.0.0.1:0",
                                   "--metrics_address=127.0.0.1:0",
                                   "--tokens_file=" + dir_ + "/tokens.txt",
                                   "--port_file=" + dir_ + "/port.json",
                                   std::string("--model_repository=") + LENSD_E2E_REPOSITORY};
  args.insert(args.end(), flags.begin(), flags.end());
  if (std::none_of(flags.begin(), flags.end(),
                   [](const std::string& f) { return f.rfind("--state_dir=", 0) == 0; })) {
    args.push_back("--state_dir=" + dir_ + "/state");
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = dir_ + "/stderr.log";
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec. The server dies with the thread that started it
    // (the test's), also when a failing test crashes: an orphaned lensd would hold CTest's
    // output pipe open forever.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 2);
    if (fd > 2) close(fd);
    execve(argv[0], argv.data(), environ);
    _exit(127);
  }
  if (pid_ < 0) {
    ADD_FAILURE() << "cannot start " << argv[0];
    return;
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(dir_ + "/port.json") && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::ifstream in(dir_ + "/port.json");
  nlohmann::json ports = nlohmann::json::parse(in, nullptr, false);
  if (!ports.is_object()) {
    ADD_FAILURE() << "lensd did not start: " << Log();
    return;
  }
  port_ = ports["port"];
  metrics_port_ = ports["metrics_port"];
  channel_ =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
  while (Health() != "SERVING" && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (Health() != "SERVING") ADD_FAILURE() << "lensd never served: " << Log();
}

LensdProcess::~LensdProcess() {
  Stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

int LensdProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string LensdProcess::Log() const {
  std::ifstream in(dir_ + "/stderr.log");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int64_t LensdProcess::ResidentBytes() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "... kB"
  }
  return -1;
}

grpc::Status LensdProcess::RawCall(const std::string& method, const std::string& bytes,
                                   const std::string& token, std::string* reply) const {
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer answer;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &answer,
                 [&](const grpc::Status& s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = s;
                   done = true;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  if (reply != nullptr && status.ok()) {
    std::vector<grpc::Slice> slices;
    (void)answer.Dump(&slices);
    reply->clear();
    for (const auto& s : slices) reply->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

std::string LensdProcess::Health(const std::string& service) const {
  // grpc.health.v1.Health/Check with HealthCheckRequest{service} (field 1, a string); the reply
  // is HealthCheckResponse{status = 1 (field 1, varint)} when SERVING.
  std::string encoded;
  if (!service.empty()) {
    encoded = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  }
  std::string bytes;
  const grpc::Status status = RawCall("/grpc.health.v1.Health/Check", encoded, "", &bytes);
  if (!status.ok()) return status.error_message();
  return bytes == std::string("\x08\x01", 2) ? "SERVING" : "NOT_SERVING";
}

std::string LensdProcess::Scrape() const {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(metrics_port_));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  timeval timeout{10, 0};  // never hang a test on a stuck endpoint
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const std::string request =
      "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  (void)send(fd, request.data(), request.size(), 0);
  std::string response;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0)
    response.append(buffer, static_cast<size_t>(n));
  close(fd);
  return response;
}

}  // namespace lensd::e2e
