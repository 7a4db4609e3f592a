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
      << "Logging: MOESERVE_LOG_LEVEL=debug|info|warn|error, MOESERVE_LOG_FORMAT=json|logfmt.\n";
}

}  // namespace

int run_cli(const std::string& program, const std::string& description,
            const std::vector<Command>& commands, int argc, char** argv) {
  if (Status s = log::configure_from_env(); !s.ok()) {
    std::cerr << program << ": " << s.to_string() << "\n";
    return 2;
  }
  if (argc < 2) {
    print_usage(std::cerr, program, description, commands);
    return 2;
  }
  std::string first = argv[1];
  if (first == "--help" || first == "-h" || first == "help") {
    print_usage(std::cout, program, description, commands);
    return 0;
  }
  if (first == "--version" || first == "version") {
    std::cout << program << " " << MOESERVE_VERSION << "\n";
    return 0;
  }
  for (const Command& c : commands) {
    if (c.name == first) return c.run(std::vector<std::string>(argv + 2, argv + argc));
  }
  std::cerr << program << ": unknown command \"" << first << "\" (see " << program << " --help)\n";
  return 2;
}

}  // namespace moeserve
