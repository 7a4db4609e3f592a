// Command-line flags shared by every binary.
//
// A FlagSet binds flag names to variables that already hold their defaults:
//   int64_t port = 8000;
//   flags.add_int("port", &port, "HTTP port", "MOESERVE_PORT");
// Accepted forms: --name VALUE, --name=VALUE, and --name alone for booleans.
// A flag not given on the command line takes its environment variable when one is
// named and set. Unknown flags, missing values and malformed numbers are errors that
// name the flag. --help is recognised by every FlagSet.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace moeserve {

class FlagSet {
 public:
  // usage: e.g. "moeserve-worker generate --model DIR [flags]".
  FlagSet(std::string usage, std::string description);

  void add_string(const std::string& name, std::string* target, const std::string& help,
                  const std::string& env = "");
  void add_int(const std::string& name, int64_t* target, const std::string& help,
               const std::string& env = "");
  void add_double(const std::string& name, double* target, const std::string& help,
                  const std::string& env = "");
  void add_bool(const std::string& name, bool* target, const std::string& help,
                const std::string& env = "");

  // Parses args (no program name). Positional arguments are kept in order.
  Status parse(const std::vector<std::string>& args);

  bool help_requested() const { return help_requested_; }
  // True when the flag was given on the command line or through its environment variable.
  bool is_set(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  std::string help() const;

  // A program's whole command line (argv[1..]): nullopt when it should go on; else the
  // exit code after --help was printed to stdout (0) or a parse error and the help to
  // stderr (2).
  std::optional<int> parse_main(int argc, char** argv);

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string env;
    std::string default_text;
    bool is_bool = false;
    bool set = false;
    std::function<Status(const std::string&)> assign;
  };
  Flag* find(const std::string& name);
  void add(Flag flag);

  std::string usage_;
  std::string description_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  bool help_requested_ = false;
};

// Parses a comma-separated list of integers ("1,2,3"); empty items are an error.
StatusOr<std::vector<int64_t>> parse_int_list(const std::string& text);

}  // namespace moeserve
