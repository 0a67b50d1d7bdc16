// lensctl's subcommands. Each returns the process exit code: 0 on success, 1 for an RPC error
// (printed as "<CODE>: <message>"), 2 for a usage error.
#ifndef LENSD_CLIENTS_CLI_COMMANDS_H_
#define LENSD_CLIENTS_CLI_COMMANDS_H_

#include <google/protobuf/repeated_ptr_field.h>
#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clients/cli/options.h"

namespace lensd::v1 {
class Input;
class Intervention;
}  // namespace lensd::v1

namespace lensctl {

struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::string token;
  double timeout_seconds = 60;
  // A context with the token, the client version and the deadline set.
  std::unique_ptr<grpc::ClientContext> Context() const;
};

using Runner = std::function<int(const Connection&, const Parsed&)>;

struct CommandEntry {
  Command command;
  Runner run;
};

std::vector<CommandEntry> Commands();
// The training-job commands (job_commands.cc).
std::vector<CommandEntry> JobCommands();
// The SAE and attribution commands (sae_commands.cc).
std::vector<CommandEntry> SaeCommands();

// --ids: token ids sent as they are (for models without tokenizer.json) instead of the text.
OptionSpec IdsOption();
// Sets `input` to --ids when given (false when they are not comma-separated integers), else to
// `text`.
bool FillInput(const Parsed& p, const std::string& text, lensd::v1::Input* input);

// The interventions commands (intervention_commands.cc): `patch`.
std::vector<CommandEntry> InterventionCommands();
// --steer and --ablate, for decode, generate and activations.
std::vector<OptionSpec> InterventionOptions();
// Appends the edits --steer and --ablate ask for; false with `error` set for a malformed one.
bool AddInterventions(const Parsed& p,
                      google::protobuf::RepeatedPtrField<lensd::v1::Intervention>* interventions,
                      std::string* error);

// Prints "lensctl: <CODE>: <message>" and returns 1.
int Fail(const grpc::Status& s);
// Prints "lensctl: <message>" and returns 2.
int Usage(const std::string& message);

}  // namespace lensctl

#endif  // LENSD_CLIENTS_CLI_COMMANDS_H_
