// Subcommand dispatch shared by the binaries: `prog COMMAND [flags]`, plus
// `prog --help` and `prog --version`. Each command parses its own flags (FlagSet).
#pragma once

#include <string>
#include <vector>

namespace moeserve {

struct Command {
  std::string name;
  std::string summary;
  // Receives the arguments after the command name; returns the process exit code.
  int (*run)(const std::vector<std::string>& args);
};

// Runs the command named by argv[1]. Exit codes: the command's own, 0 for --help and
// --version, 2 for a missing or unknown command. With `default_command`, a command line
// that starts with a flag (or is empty) runs that command with all its arguments.
int run_cli(const std::string& program, const std::string& description,
            const std::vector<Command>& commands, int argc, char** argv,
            const std::string& default_command = "");

}  // namespace moeserve
