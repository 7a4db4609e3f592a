#include "common/cli.h"

#include <iostream>

#include "common/log.h"

namespace moeserve {
namespace {

void print_usage(std::ostream& out, const std::string& program, const std::string& description,
                 const std::vector<Command>& commands) {
  out << "Usage: " << program << " COMMAND [flags]\n\n" << description << "\n\nCommands:\n";
  for (const Command& c : commands) {
    std::string left = "  " + c.name;
    out << left << std::string(left.size() < 16 ? 16 - left.size() : 1, ' ') << c.summary << "\n";
  }
  out << "\nRun '" << program << " COMMAND --help' for a command's flags.\n"
      << "Logging (any command): --log-level debug|info|warn|error, --log-format json|logfmt\n"
      << "  or MOESERVE_LOG_LEVEL / MOESERVE_LOG_FORMAT; logs are JSON lines on stderr.\n";
}

Status set_log_level(const std::string& text) {
  auto level = log::parse_level(text);
  if (!level.ok()) return level.status().with_context("--log-level");
  log::configure(*level, log::current_format());
  return ok_status();
}

Status set_log_format(const std::string& text) {
  auto format = log::parse_format(text);
  if (!format.ok()) return format.status().with_context("--log-format");
  log::configure(log::current_level(), *format);
  return ok_status();
}

}  // namespace

int run_cli(const std::string& program, const std::string& description,
            const std::vector<Command>& commands, int argc, char** argv,
            const std::string& default_command) {
  if (Status s = log::configure_from_env(); !s.ok()) {
    std::cerr << program << ": " << s.to_string() << "\n";
    return 2;
  }
  std::string first = argc >= 2 ? argv[1] : "";
  bool use_default =
      !default_command.empty() && (first.empty() || (first[0] == '-' && first != "--help" &&
                                                     first != "-h" && first != "--version"));
  if (argc < 2 && !use_default) {
    print_usage(std::cerr, program, description, commands);
    return 2;
  }
  if (first == "--help" || first == "-h" || first == "help") {
    print_usage(std::cout, program, description, commands);
    return 0;
  }
  if (first == "--version" || first == "version") {
    std::cout << program << " " << MOESERVE_VERSION << "\n";
    return 0;
  }
  std::vector<std::string> args;
  for (int i = use_default ? 1 : 2; i < argc; ++i) {
    std::string arg = argv[i];
    // --log-level / --log-format are global: every command accepts them.
    for (const char* name : {"--log-level", "--log-format"}) {
      std::string flag = name;
      std::string value;
      if (arg == flag && i + 1 < argc) {
        value = argv[++i];
      } else if (arg.rfind(flag + "=", 0) == 0) {
        value = arg.substr(flag.size() + 1);
      } else {
        continue;
      }
      Status s = flag == "--log-level" ? set_log_level(value) : set_log_format(value);
      if (!s.ok()) {
        std::cerr << program << ": " << s.to_string() << "\n";
        return 2;
      }
      arg.clear();
    }
    if (!arg.empty()) args.push_back(std::move(arg));
  }
  const std::string& chosen = use_default ? default_command : first;
  for (const Command& c : commands) {
    if (c.name == chosen) return c.run(args);
  }
  std::cerr << program << ": unknown command \"" << first << "\" (see " << program << " --help)\n";
  return 2;
}

}  // namespace moeserve
