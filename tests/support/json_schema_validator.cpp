#include "tests/support/json_schema_validator.h"

#include "tests/support/test_util.h"

namespace moeserve::testing {

bool have_jsonschema() {
  return run_command("python3 -c 'import jsonschema' >/dev/null 2>&1") == 0;
}

std::vector<std::string> validate_with_jsonschema(const nlohmann::ordered_json& schema,
                                                  const std::vector<std::string>& instances) {
  TempDir dir;
  write_file(dir.file("input.json"),
             nlohmann::ordered_json{{"schema", schema}, {"instances", instances}}.dump());
  write_file(dir.file("validate.py"), R"(import json, sys, jsonschema
data = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(data["schema"])
out = []
for text in data["instances"]:
    try:
        errors = [e.message for e in validator.iter_errors(json.loads(text))]
        out.append("; ".join(errors))
    except Exception as e:
        out.append("not JSON: " + str(e))
json.dump(out, open(sys.argv[2], "w"))
)");
  const int rc = run_command("python3 " + dir.file("validate.py") + " " + dir.file("input.json") +
                             " " + dir.file("output.json"));
  if (rc != 0) return std::vector<std::string>(instances.size(), "the validator failed to run");
  return nlohmann::json::parse(read_file(dir.file("output.json"))).get<std::vector<std::string>>();
}

}  // namespace moeserve::testing
