// lensctl: the command-line client of lensd. `lensctl --help` lists the commands;
// `lensctl <command> --help` their options.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "clients/cli/commands.h"

namespace {

using lensctl::OptionSpec;

const std::vector<OptionSpec>& GlobalOptions() {
  static const auto* const kOptions = new std::vector<OptionSpec>{
      {"address", "server address (or $LENSD_ADDRESS)", "127.0.0.1:50051"},
      {"token", "bearer token (or $LENSD_TOKEN)", ""},
      {"tls", "connect with TLS", "false", true},
      {"ca_cert", "PEM file of the CA that signed the server's certificate (with --tls)", ""},
      {"timeout", "seconds before the call is abandoned", "60"},
  };
  return *kOptions;
}

void PrintOptions(const std::vector<OptionSpec>& options) {
  for (const OptionSpec& o : options) {
    std::cout << "  --" << o.name << (o.is_switch ? "" : "=<value>") << "\n      " << o.help
              << (o.default_value.empty() || o.is_switch ? ""
                                                         : " (default " + o.default_value + ")")
              << "\n";
  }
}

int Help(const std::vector<lensctl::CommandEntry>& commands) {
  std::cout << "lensctl: the command-line client of lensd.\n\nUsage: lensctl <command> [options] "
               "[arguments]\n\nCommands:\n";
  for (const auto& c : commands) {
    std::cout << "  " << c.command.name << std::string(14 - c.command.name.size(), ' ')
              << c.command.summary << "\n";
  }
  std::cout << "\nOptions for every command:\n";
  PrintOptions(GlobalOptions());
  std::cout << "\n`lensctl <command> --help` shows a command's options.\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<lensctl::CommandEntry> commands = lensctl::Commands();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    return Help(commands);
  }
  const lensctl::CommandEntry* entry = nullptr;
  for (const auto& c : commands) {
    if (c.command.name == argv[1]) entry = &c;
  }
  if (entry == nullptr) {
    std::cerr << "lensctl: unknown command " << argv[1] << " (lensctl --help lists them)\n";
    return 2;
  }
  std::vector<OptionSpec> options = GlobalOptions();
  options.insert(options.end(), entry->command.options.begin(), entry->command.options.end());
  lensctl::Parsed parsed;
  for (const OptionSpec& o : options) parsed.values[o.name] = o.default_value;
  if (const char* env = std::getenv("LENSD_ADDRESS")) parsed.values["address"] = env;
  if (const char* env = std::getenv("LENSD_TOKEN")) parsed.values["token"] = env;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << "lensctl " << entry->command.name << " " << entry->command.usage << "\n  "
                << entry->command.summary << "\n\nOptions:\n";
      PrintOptions(options);
      return 0;
    }
    if (!absl::StartsWith(arg, "--")) {
      parsed.positional.push_back(arg);
      continue;
    }
    arg = arg.substr(2);
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& o : options) {
      if (o.name == name) spec = &o;
    }
    if (spec == nullptr) {
      std::cerr << "lensctl " << entry->command.name << ": unknown option --" << name
                << " (see lensctl " << entry->command.name << " --help)\n";
      return 2;
    }
    if (eq != std::string::npos) {
      parsed.values[name] = arg.substr(eq + 1);
    } else if (spec->is_switch) {
      parsed.values[name] = "true";
    } else if (i + 1 < argc) {
      parsed.values[name] = argv[++i];
    } else {
      std::cerr << "lensctl: --" << name << " needs a value\n";
      return 2;
    }
  }
  // "<x>" arguments are required, "[<x> ...]" ones optional; --ids stands for a prompt.
  if (!entry->command.usage.empty() && entry->command.usage[0] != '[' &&
      parsed.positional.empty() && parsed.Get("ids").empty()) {
    std::cerr << "lensctl " << entry->command.name << ": give " << entry->command.usage << "\n";
    return 2;
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (parsed.Flag("tls")) {
    grpc::SslCredentialsOptions ssl;
    if (const std::string ca = parsed.Get("ca_cert"); !ca.empty()) {
      std::ifstream in(ca);
      std::stringstream text;
      text << in.rdbuf();
      ssl.pem_root_certs = text.str();
    }
    credentials = grpc::SslCredentials(ssl);
  }
  lensctl::Connection connection;
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(64 << 20);
  connection.channel = grpc::CreateCustomChannel(parsed.Get("address"), credentials, arguments);
  connection.token = parsed.Get("token");
  if (!absl::SimpleAtod(parsed.Get("timeout"), &connection.timeout_seconds)) {
    std::cerr << "lensctl: --timeout must be a number of seconds\n";
    return 2;
  }
  return entry->run(connection, parsed);
}
