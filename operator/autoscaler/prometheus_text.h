// A strict parser of the Prometheus text exposition format (version 0.0.4), the body
// of a worker's GET /metrics. Pure; never throws.
//
// Accepted: `# HELP name text` and `# TYPE name counter|gauge|histogram|summary|untyped`
// lines (other `#` lines are comments), blank lines, and samples
//   name[{label="value",...}] value [timestamp_ms]
// with names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*, label values
// in double quotes with the escapes \\ \" \n, values as Go's ParseFloat reads them
// (including +Inf, -Inf, NaN), an optional integer timestamp, and an optional trailing
// comma inside the braces. Anything else — a bad name, an unterminated quote, an
// unknown escape, a duplicate label, a value that is not a number, trailing garbage —
// fails the whole parse with invalid_argument naming the line: a scrape is either
// understood completely or not used.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace moeserve::autoscaler {

struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  // in the order written
  double value = 0;

  // The value of label `name`, nullopt when absent.
  std::optional<std::string> label(std::string_view name) const;
};

StatusOr<std::vector<Sample>> parse_exposition(std::string_view text);

}  // namespace moeserve::autoscaler
