#include "common/flags.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace moeserve {
namespace {

StatusOr<int64_t> parse_int(const std::string& text) {
  if (text.empty()) return invalid_argument_error("expected an integer, got an empty value");
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size()) {
    return invalid_argument_error("expected an integer, got \"" + text + "\"");
  }
  return static_cast<int64_t>(v);
}

StatusOr<double> parse_double(const std::string& text) {
  if (text.empty()) return invalid_argument_error("expected a number, got an empty value");
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size()) {
    return invalid_argument_error("expected a number, got \"" + text + "\"");
  }
  return v;
}

StatusOr<bool> parse_bool(const std::string& text) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  return invalid_argument_error("expected true or false, got \"" + text + "\"");
}

}  // namespace

FlagSet::FlagSet(std::string usage, std::string description)
    : usage_(std::move(usage)), description_(std::move(description)) {}

void FlagSet::add(Flag flag) { flags_.push_back(std::move(flag)); }

void FlagSet::add_string(const std::string& name, std::string* target, const std::string& help,
                         const std::string& env) {
  add({name, help, env, *target, false, false, [target](const std::string& v) {
         *target = v;
         return ok_status();
       }});
}

void FlagSet::add_int(const std::string& name, int64_t* target, const std::string& help,
                      const std::string& env) {
  add({name, help, env, std::to_string(*target), false, false,
       [target](const std::string& v) -> Status {
         auto parsed = parse_int(v);
         if (!parsed.ok()) return parsed.status();
         *target = *parsed;
         return ok_status();
       }});
}

void FlagSet::add_double(const std::string& name, double* target, const std::string& help,
                         const std::string& env) {
  std::ostringstream def;
  def << *target;
  add({name, help, env, def.str(), false, false, [target](const std::string& v) -> Status {
         auto parsed = parse_double(v);
         if (!parsed.ok()) return parsed.status();
         *target = *parsed;
         return ok_status();
       }});
}

void FlagSet::add_bool(const std::string& name, bool* target, const std::string& help,
                       const std::string& env) {
  add({name, help, env, *target ? "true" : "false", true, false,
       [target](const std::string& v) -> Status {
         auto parsed = parse_bool(v);
         if (!parsed.ok()) return parsed.status();
         *target = *parsed;
         return ok_status();
       }});
}

FlagSet::Flag* FlagSet::find(const std::string& name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool FlagSet::is_set(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.set;
  }
  return false;
}

Status FlagSet::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (arg == "--") {
      positional_.insert(positional_.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    Flag* flag = find(name);
    if (!flag) return invalid_argument_error("unknown flag --" + name + " (see --help)");
    if (!has_value) {
      if (flag->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return invalid_argument_error("flag --" + name + " needs a value");
      }
    }
    Status s = flag->assign(value);
    if (!s.ok()) return s.with_context("flag --" + name);
    flag->set = true;
  }
  for (Flag& flag : flags_) {
    if (flag.set || flag.env.empty()) continue;
    const char* v = std::getenv(flag.env.c_str());
    if (!v || !*v) continue;
    Status s = flag.assign(v);
    if (!s.ok()) return s.with_context("environment variable " + flag.env);
    flag.set = true;
  }
  return ok_status();
}

std::string FlagSet::help() const {
  std::ostringstream out;
  out << "Usage: " << usage_ << "\n\n" << description_ << "\n\nFlags:\n";
  for (const Flag& f : flags_) {
    std::string left = "  --" + f.name + (f.is_bool ? "" : " VALUE");
    out << left;
    if (left.size() < 28)
      out << std::string(28 - left.size(), ' ');
    else
      out << "\n" << std::string(28, ' ');
    out << f.help;
    if (!f.default_text.empty()) out << " (default: " << f.default_text << ")";
    if (!f.env.empty()) out << " [env " << f.env << "]";
    out << "\n";
  }
  out << "  --help                    show this help\n";
  return out.str();
}

StatusOr<std::vector<int64_t>> parse_int_list(const std::string& text) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto v = parse_int(item);
    if (!v.ok()) return v.status().with_context("list item " + std::to_string(out.size()));
    out.push_back(*v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::optional<int> FlagSet::parse_main(int argc, char** argv) {
  if (Status s = parse(std::vector<std::string>(argv + 1, argv + argc)); !s.ok()) {
    std::fprintf(stderr, "%s\n%s", s.message().c_str(), help().c_str());
    return 2;
  }
  if (help_requested()) {
    std::printf("%s", help().c_str());
    return 0;
  }
  return std::nullopt;
}

}  // namespace moeserve
