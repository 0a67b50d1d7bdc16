// lensctl's command-line parsing: each subcommand declares its options (name, help, default),
// so that `lensctl <command> --help` lists them and unknown options are refused by name.
#ifndef LENSD_CLIENTS_CLI_OPTIONS_H_
#define LENSD_CLIENTS_CLI_OPTIONS_H_

#include <map>
#include <string>
#include <vector>

namespace lensctl {

struct OptionSpec {
  std::string name;
  std::string help;
  std::string default_value;
  bool is_switch = false;  // --name alone means true
};

struct Command {
  std::string name;
  std::string summary;
  std::string usage;  // positional arguments, e.g. "<prompt>"
  std::vector<OptionSpec> options;
};

struct Parsed {
  std::map<std::string, std::string> values;
  std::vector<std::string> positional;
  std::string Get(const std::string& name) const {
    const auto it = values.find(name);
    return it == values.end() ? "" : it->second;
  }
  bool Flag(const std::string& name) const { return Get(name) == "true"; }
};

}  // namespace lensctl

#endif  // LENSD_CLIENTS_CLI_OPTIONS_H_
