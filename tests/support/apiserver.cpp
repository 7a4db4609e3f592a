#include "tests/support/apiserver.h"

#include "tests/support/kube_protobuf.h"

#include <algorithm>
#include <atomic>
#include <ctime>
#include <deque>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace moeserve::testing {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------
// Resource types

struct ScaleSpec {
  std::string spec_replicas_path;    // ".spec.replicas"
  std::string status_replicas_path;  // ".status.replicas"
  std::string label_selector_path;   // ".status.selector" ("" = derive from spec.selector)
};

struct ResourceType {
  std::string group;
  std::string version;
  std::string plural;
  std::string singular;
  std::string kind;
  bool namespaced = true;
  std::vector<std::string> short_names;
  std::vector<std::string> categories;
  bool status_subresource = false;
  std::optional<ScaleSpec> scale;
  bool custom = false;
  json schema;           // openAPIV3Schema (custom resources)
  json printer_columns;  // additionalPrinterColumns (custom resources)

  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
  std::string store_key() const { return group + "/" + plural; }
  // "pods", "modeldeployments.moeserve.io": how Kubernetes names a resource in messages.
  std::string qualified() const { return group.empty() ? plural : plural + "." + group; }
};

ResourceType builtin(std::string group, std::string version, std::string plural,
                     std::string singular, std::string kind, bool namespaced,
                     std::vector<std::string> short_names, bool status = false,
                     bool scale = false) {
  ResourceType t;
  t.group = std::move(group);
  t.version = std::move(version);
  t.plural = std::move(plural);
  t.singular = std::move(singular);
  t.kind = std::move(kind);
  t.namespaced = namespaced;
  t.short_names = std::move(short_names);
  t.status_subresource = status;
  if (scale) t.scale = ScaleSpec{".spec.replicas", ".status.replicas", ""};
  return t;
}

std::vector<ResourceType> builtin_types() {
  std::vector<ResourceType> types = {
      builtin("", "v1", "namespaces", "namespace", "Namespace", false, {"ns"}, true),
      builtin("", "v1", "pods", "pod", "Pod", true, {"po"}, true),
      builtin("", "v1", "services", "service", "Service", true, {"svc"}, true),
      builtin("", "v1", "configmaps", "configmap", "ConfigMap", true, {"cm"}),
      builtin("", "v1", "secrets", "secret", "Secret", true, {}),
      builtin("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, {"sa"}),
      builtin("", "v1", "events", "event", "Event", true, {"ev"}),
      builtin("events.k8s.io", "v1", "events", "event", "Event", true, {"ev"}),
      builtin("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, {"sts"}, true,
              true),
      builtin("apps", "v1", "deployments", "deployment", "Deployment", true, {"deploy"}, true,
              true),
      builtin("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget",
              true, {"pdb"}, true),
      builtin("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", true,
              {"netpol"}),
      builtin("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, {}),
      builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
              "CustomResourceDefinition", false, {"crd", "crds"}, true),
  };
  for (auto& t : types) {
    if (t.plural == "pods" || t.plural == "services" || t.plural == "statefulsets" ||
        t.plural == "deployments" || t.plural == "configmaps" || t.plural == "secrets") {
      t.categories = {"all"};
    }
    if (t.plural == "configmaps" || t.plural == "secrets") t.categories.clear();
  }
  return types;
}

const std::string kCrdKey = "apiextensions.k8s.io/customresourcedefinitions";
const std::string kNamespaceKey = "/namespaces";

// ---------------------------------------------------------------------------
// Small JSON helpers

std::string str(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

json& meta(json& object) {
  if (!object["metadata"].is_object()) object["metadata"] = json::object();
  return object["metadata"];
}

const json& meta_of(const json& object) {
  static const json kEmpty = json::object();
  auto it = object.find("metadata");
  return it != object.end() && it->is_object() ? *it : kEmpty;
}

std::string name_of(const json& object) { return str(meta_of(object), "name"); }
std::string uid_of(const json& object) { return str(meta_of(object), "uid"); }

bool has_finalizers(const json& object) {
  auto it = meta_of(object).find("finalizers");
  return it != meta_of(object).end() && it->is_array() && !it->empty();
}

std::string store_key(const std::string& ns, const std::string& name) { return ns + "/" + name; }

std::string now_rfc3339() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// ".spec.replicas" -> "/spec/replicas"
json::json_pointer pointer_for(const std::string& dotted) {
  std::string out;
  for (char c : dotted) out.push_back(c == '.' ? '/' : c);
  if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
  return json::json_pointer(out);
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  return std::isalnum(static_cast<unsigned char>(name.front())) &&
         std::isalnum(static_cast<unsigned char>(name.back()));
}

// ---------------------------------------------------------------------------
// Errors in Kubernetes' Status shape

struct Failure {
  int code;
  std::string reason;
  std::string message;
  json details = json::object();
};

http::Response json_reply(int code, const json& body) {
  return http::json_response(code, body.dump());
}

http::Response failure_reply(const Failure& f) {
  json body = {{"kind", "Status"},     {"apiVersion", "v1"},   {"metadata", json::object()},
               {"status", "Failure"},  {"message", f.message}, {"reason", f.reason},
               {"details", f.details}, {"code", f.code}};
  http::Response r = json_reply(f.code, body);
  auto retry = f.details.find("retryAfterSeconds");
  if (retry != f.details.end())
    r.headers.emplace_back("Retry-After", std::to_string(retry->get<int>()));
  return r;
}

json details_for(const ResourceType& t, const std::string& name) {
  json d = {{"name", name}, {"kind", t.plural}};
  if (!t.group.empty()) d["group"] = t.group;
  return d;
}

Failure not_found(const ResourceType& t, const std::string& name) {
  return {404, "NotFound", t.qualified() + " \"" + name + "\" not found", details_for(t, name)};
}

Failure conflict(const ResourceType& t, const std::string& name) {
  return {409, "Conflict",
          "Operation cannot be fulfilled on " + t.qualified() + " \"" + name +
              "\": the object has been modified; please apply your changes to the latest "
              "version and try again",
          details_for(t, name)};
}

Failure bad_request(std::string message) { return {400, "BadRequest", std::move(message)}; }

Failure invalid(const ResourceType& t, const std::string& name, const json& causes) {
  std::string message =
      t.kind + (t.group.empty() ? "" : "." + t.group) + " \"" + name + "\" is invalid: ";
  for (size_t i = 0; i < causes.size(); ++i) {
    if (i) message += ", ";
    message += str(causes[i], "field") + ": " + str(causes[i], "message");
  }
  json details = details_for(t, name);
  details["kind"] = t.kind;
  details["causes"] = causes;
  return {422, "Invalid", message, details};
}

json cause(const std::string& reason, const std::string& field, const std::string& message) {
  return {{"reason", reason}, {"field", field}, {"message", message}};
}

// ---------------------------------------------------------------------------
// CRD schemas: defaults and basic validation

void apply_defaults(const json& schema, json& value) {
  if (!schema.is_object()) return;
  if (value.is_object()) {
    auto props = schema.find("properties");
    if (props != schema.end() && props->is_object()) {
      for (const auto& [key, sub] : props->items()) {
        if (!value.contains(key) && sub.is_object() && sub.contains("default")) {
          value[key] = sub["default"];
        }
        if (value.contains(key)) apply_defaults(sub, value[key]);
      }
    }
    auto extra = schema.find("additionalProperties");
    if (extra != schema.end() && extra->is_object()) {
      for (auto& [key, sub_value] : value.items()) {
        if (props == schema.end() || !props->contains(key)) apply_defaults(*extra, sub_value);
      }
    }
  } else if (value.is_array()) {
    auto items = schema.find("items");
    if (items != schema.end()) {
      for (auto& element : value) apply_defaults(*items, element);
    }
  }
}

bool type_matches(const std::string& type, const json& value) {
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  if (type == "string") return value.is_string();
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  if (type == "boolean") return value.is_boolean();
  return true;
}

void validate_schema(const json& schema, const json& value, const std::string& path, json* causes) {
  if (!schema.is_object()) return;
  std::string type = str(schema, "type");
  bool int_or_string = schema.value("x-kubernetes-int-or-string", false);
  if (value.is_null() && schema.value("nullable", false)) return;
  if (int_or_string) {
    if (!value.is_number_integer() && !value.is_string()) {
      causes->push_back(cause("FieldValueTypeInvalid", path, "must be an integer or a string"));
    }
    return;
  }
  if (!type.empty() && !type_matches(type, value)) {
    causes->push_back(cause(
        "FieldValueTypeInvalid", path,
        "Invalid value: \"" + std::string(value.type_name()) + "\": must be of type " + type));
    return;
  }
  if (auto e = schema.find("enum"); e != schema.end() && e->is_array()) {
    if (std::find(e->begin(), e->end(), value) == e->end()) {
      causes->push_back(
          cause("FieldValueNotSupported", path,
                "Unsupported value: " + value.dump() + ": supported values: " + e->dump()));
    }
  }
  if (value.is_number()) {
    if (schema.contains("minimum") && value.get<double>() < schema["minimum"].get<double>()) {
      causes->push_back(cause("FieldValueInvalid", path,
                              "Invalid value: " + value.dump() +
                                  ": should be greater than or "
                                  "equal to " +
                                  schema["minimum"].dump()));
    }
    if (schema.contains("maximum") && value.get<double>() > schema["maximum"].get<double>()) {
      causes->push_back(cause("FieldValueInvalid", path,
                              "Invalid value: " + value.dump() +
                                  ": should be less than or "
                                  "equal to " +
                                  schema["maximum"].dump()));
    }
  }
  if (value.is_string()) {
    size_t length = value.get_ref<const std::string&>().size();
    if (schema.contains("minLength") && length < schema["minLength"].get<size_t>()) {
      causes->push_back(cause("FieldValueInvalid", path,
                              "Invalid value: " + value.dump() + ": should be at least " +
                                  schema["minLength"].dump() + " chars long"));
    }
    if (schema.contains("maxLength") && length > schema["maxLength"].get<size_t>()) {
      causes->push_back(cause("FieldValueTooLong", path,
                              "Too long: may not be longer than " + schema["maxLength"].dump()));
    }
  }
  std::string prefix = path.empty() ? "" : path + ".";
  if (value.is_object()) {
    if (auto req = schema.find("required"); req != schema.end() && req->is_array()) {
      for (const auto& key : *req) {
        if (key.is_string() && !value.contains(key.get<std::string>())) {
          causes->push_back(
              cause("FieldValueRequired", prefix + key.get<std::string>(), "Required value"));
        }
      }
    }
    auto props = schema.find("properties");
    auto extra = schema.find("additionalProperties");
    for (const auto& [key, sub_value] : value.items()) {
      if (path.empty() && key == "metadata") continue;
      if (props != schema.end() && props->contains(key)) {
        validate_schema((*props)[key], sub_value, prefix + key, causes);
      } else if (extra != schema.end() && extra->is_object()) {
        validate_schema(*extra, sub_value, prefix + key, causes);
      }
    }
  }
  if (value.is_array()) {
    if (auto items = schema.find("items"); items != schema.end()) {
      for (size_t i = 0; i < value.size(); ++i) {
        validate_schema(*items, value[i], path + "[" + std::to_string(i) + "]", causes);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Server-side tables (kubectl get) for custom resources' additionalPrinterColumns

// Evaluates the JSONPath subset printer columns use: ".a.b", "[N]", "[*]" and
// "[?(@.key==\"value\")]"; the first match, or null.
json eval_jsonpath(const json& object, const std::string& path) {
  std::vector<const json*> nodes = {&object};
  size_t at = 0;
  while (at < path.size() && !nodes.empty()) {
    std::vector<const json*> next;
    if (path[at] == '.') {
      size_t end = path.find_first_of(".[", at + 1);
      std::string key =
          path.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1);
      for (const json* n : nodes) {
        if (n->is_object() && n->contains(key)) next.push_back(&(*n)[key]);
      }
      at = end == std::string::npos ? path.size() : end;
    } else if (path[at] == '[') {
      size_t end = path.find(']', at);
      if (end == std::string::npos) return json();
      std::string inner = path.substr(at + 1, end - at - 1);
      for (const json* n : nodes) {
        if (!n->is_array()) continue;
        if (inner == "*") {
          for (const auto& e : *n) next.push_back(&e);
        } else if (inner.rfind("?(@.", 0) == 0 && inner.back() == ')') {
          std::string condition = inner.substr(4, inner.size() - 5);
          size_t eq = condition.find("==");
          if (eq == std::string::npos) return json();
          std::string key = condition.substr(0, eq);
          std::string value = condition.substr(eq + 2);
          if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'')) {
            value = value.substr(1, value.size() - 2);
          }
          for (const auto& e : *n) {
            if (e.is_object() && e.contains(key) && e[key].is_string() && e[key] == value) {
              next.push_back(&e);
            }
          }
        } else if (!inner.empty() && std::all_of(inner.begin(), inner.end(), ::isdigit)) {
          size_t index = std::stoul(inner);
          if (index < n->size()) next.push_back(&(*n)[index]);
        }
      }
      at = end + 1;
    } else {
      return json();
    }
    nodes = std::move(next);
  }
  return nodes.empty() ? json() : *nodes.front();
}

// "42s", "5m", "3h", "2d" since an RFC 3339 UTC timestamp, as kubectl prints ages.
std::string human_age(const std::string& timestamp) {
  std::tm tm{};
  if (!strptime(timestamp.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)) return "<unknown>";
  int64_t seconds = std::max<int64_t>(0, static_cast<int64_t>(std::time(nullptr) - timegm(&tm)));
  if (seconds < 120) return std::to_string(seconds) + "s";
  if (seconds < 2 * 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 48 * 3600) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

bool wants_table(const http::Request& req) {
  return req.header("accept").find("as=Table") != std::string::npos;
}

// A meta.k8s.io/v1 Table of `objects` with the Name column and the printer columns.
json make_table(const json& printer_columns, const std::vector<json>& objects, json list_meta) {
  json columns = json::array({{{"name", "Name"},
                               {"type", "string"},
                               {"format", "name"},
                               {"description", "Name must be unique within a namespace."},
                               {"priority", 0}}});
  for (const auto& c : printer_columns) {
    columns.push_back({{"name", str(c, "name")},
                       {"type", str(c, "type")},
                       {"format", str(c, "format")},
                       {"description", str(c, "description")},
                       {"priority", c.value("priority", 0)}});
  }
  json rows = json::array();
  for (const json& object : objects) {
    json cells = json::array({name_of(object)});
    for (const auto& c : printer_columns) {
      json value = eval_jsonpath(object, str(c, "jsonPath"));
      if (str(c, "type") == "date" && value.is_string())
        value = human_age(value.get<std::string>());
      cells.push_back(value);
    }
    rows.push_back({{"cells", cells},
                    {"object",
                     {{"kind", "PartialObjectMetadata"},
                      {"apiVersion", "meta.k8s.io/v1"},
                      {"metadata", meta_of(object)}}}});
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", std::move(list_meta)},
          {"columnDefinitions", columns},
          {"rows", rows}};
}

// ---------------------------------------------------------------------------
// Selectors

struct Requirement {
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kNotExists };
  std::string key;
  Op op = Op::kEquals;
  std::vector<std::string> values;
};

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split_top_level(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(current);
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  out.push_back(current);
  return out;
}

std::optional<std::vector<Requirement>> parse_selector(const std::string& text) {
  std::vector<Requirement> out;
  if (trim(text).empty()) return out;
  for (const std::string& raw : split_top_level(text)) {
    std::string term = trim(raw);
    if (term.empty()) return std::nullopt;
    Requirement r;
    size_t set_at;
    if (term.front() == '!') {
      r.op = Requirement::Op::kNotExists;
      r.key = trim(term.substr(1));
    } else if ((set_at = term.find(" notin ")) != std::string::npos ||
               (set_at = term.find(" in ")) != std::string::npos) {
      bool notin = term.compare(set_at, 7, " notin ") == 0;
      r.op = notin ? Requirement::Op::kNotIn : Requirement::Op::kIn;
      r.key = trim(term.substr(0, set_at));
      std::string rest = trim(term.substr(set_at + (notin ? 7 : 4)));
      if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')') return std::nullopt;
      for (const std::string& v : split_top_level(rest.substr(1, rest.size() - 2))) {
        r.values.push_back(trim(v));
      }
    } else if (size_t ne = term.find("!="); ne != std::string::npos) {
      r.op = Requirement::Op::kNotEquals;
      r.key = trim(term.substr(0, ne));
      r.values = {trim(term.substr(ne + 2))};
    } else if (size_t eq = term.find('='); eq != std::string::npos) {
      size_t skip = term.compare(eq, 2, "==") == 0 ? 2 : 1;
      r.key = trim(term.substr(0, eq));
      r.values = {trim(term.substr(eq + skip))};
    } else {
      r.op = Requirement::Op::kExists;
      r.key = term;
    }
    if (r.key.empty()) return std::nullopt;
    out.push_back(std::move(r));
  }
  return out;
}

bool requirement_matches(const Requirement& r, const std::optional<std::string>& value) {
  auto in_values = [&] {
    return value && std::find(r.values.begin(), r.values.end(), *value) != r.values.end();
  };
  switch (r.op) {
    case Requirement::Op::kEquals: return value && *value == r.values[0];
    case Requirement::Op::kNotEquals: return !value || *value != r.values[0];
    case Requirement::Op::kIn: return in_values();
    case Requirement::Op::kNotIn: return !in_values();
    case Requirement::Op::kExists: return value.has_value();
    case Requirement::Op::kNotExists: return !value.has_value();
  }
  return false;
}

struct Matcher {
  std::vector<Requirement> labels;
  std::vector<Requirement> fields;

  bool matches(const json& object) const {
    const json& m = meta_of(object);
    for (const auto& r : labels) {
      std::optional<std::string> value;
      auto l = m.find("labels");
      if (l != m.end() && l->is_object() && l->contains(r.key) && (*l)[r.key].is_string()) {
        value = (*l)[r.key].get<std::string>();
      }
      if (!requirement_matches(r, value)) return false;
    }
    for (const auto& r : fields) {
      std::optional<std::string> value;
      if (r.key == "metadata.name") value = str(m, "name");
      if (r.key == "metadata.namespace") value = str(m, "namespace");
      if (!requirement_matches(r, value)) return false;
    }
    return true;
  }
};

std::optional<Failure> parse_matcher(const http::Request& req, Matcher* out) {
  auto labels = parse_selector(req.query_param("labelSelector"));
  if (!labels)
    return bad_request("unable to parse requirement: labelSelector \"" +
                       req.query_param("labelSelector") + "\"");
  auto fields = parse_selector(req.query_param("fieldSelector"));
  if (!fields)
    return bad_request("invalid field selector \"" + req.query_param("fieldSelector") + "\"");
  for (const auto& f : *fields) {
    if (f.key != "metadata.name" && f.key != "metadata.namespace") {
      return bad_request("field label not supported: " + f.key);
    }
  }
  out->labels = std::move(*labels);
  out->fields = std::move(*fields);
  return std::nullopt;
}

// ---------------------------------------------------------------------------

struct Event {
  int64_t rv = 0;
  std::string store_key;
  std::string ns;
  std::string type;  // ADDED, MODIFIED, DELETED
  json object;
  json old_object;  // MODIFIED: the previous state (for selector transitions)
};

struct FaultRule {
  int remaining = 0;
  int http_status = 500;
  std::string method;
  std::string path_substring;
  int retry_after_s = 0;
};

struct Route {
  enum class Kind { kDiscovery, kResource, kNotFound } kind = Kind::kNotFound;
  std::string group;
  std::string version;
  bool core = false;
  std::string resource;
  std::string ns;
  std::string name;
  std::string sub;
};

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

Route parse_route(const std::string& path) {
  Route r;
  std::vector<std::string> seg = split_path(path);
  size_t at;
  if (seg.size() >= 1 && seg[0] == "api") {
    r.core = true;
    if (seg.size() == 1) return {Route::Kind::kDiscovery, "", "", true};
    r.version = seg[1];
    at = 2;
  } else if (seg.size() >= 1 && seg[0] == "apis") {
    if (seg.size() <= 2) {
      r.kind = Route::Kind::kDiscovery;
      if (seg.size() == 2) r.group = seg[1];
      return r;
    }
    r.group = seg[1];
    r.version = seg[2];
    at = 3;
  } else {
    return r;
  }
  std::vector<std::string> rest(seg.begin() + static_cast<long>(at), seg.end());
  if (rest.empty()) {
    r.kind = Route::Kind::kDiscovery;
    return r;
  }
  bool namespace_subresource =
      rest.size() == 3 && rest[0] == "namespaces" && (rest[2] == "status" || rest[2] == "finalize");
  if (rest[0] == "namespaces" && rest.size() >= 3 && !namespace_subresource) {
    r.ns = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
  }
  if (rest.size() > 3) return r;
  r.kind = Route::Kind::kResource;
  r.resource = rest[0];
  if (rest.size() >= 2) r.name = rest[1];
  if (rest.size() == 3) r.sub = rest[2];
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------

struct ApiServer::State {
  ApiServerOptions options;
  uint16_t port = 0;

  mutable std::mutex mu;
  std::condition_variable changed;
  std::vector<ResourceType> types;
  std::map<std::string, std::map<std::string, json>> store;  // store_key -> ns/name -> object
  std::deque<Event> history;
  int64_t rv = 0;
  int64_t compacted_rv = 0;  // events with rv <= this are gone from the history
  int64_t drop_generation = 0;
  bool stopping = false;
  std::vector<FaultRule> faults;
  std::map<std::string, int64_t> counts;
  int64_t open_watches = 0;
  std::atomic<int64_t> latency_ms{0};
  std::mt19937_64 rng{std::random_device{}()};
  FaultProfile profile;
  std::mt19937_64 fault_rng{1};
  std::map<std::string, int64_t> injected;

  State() {
    types = builtin_types();
    for (const char* ns : {"default", "kube-system", "kube-public"}) {
      json object = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}};
      stamp_new(object);
      object["status"] = {{"phase", "Active"}};
      store[kNamespaceKey][store_key("", ns)] = object;
    }
  }

  // --- lookups (mu held) ---

  const ResourceType* find_type(const std::string& group, const std::string& version,
                                const std::string& plural) const {
    for (const auto& t : types) {
      if (t.group == group && t.version == version && t.plural == plural) return &t;
    }
    return nullptr;
  }

  std::string random_suffix(size_t n, const char* alphabet) {
    std::string alpha(alphabet);
    std::string out;
    for (size_t i = 0; i < n; ++i) out.push_back(alpha[rng() % alpha.size()]);
    return out;
  }

  std::string new_uid() {
    std::string hex = random_suffix(32, "0123456789abcdef");
    hex[12] = '4';
    return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
           hex.substr(16, 4) + "-" + hex.substr(20, 12);
  }

  void stamp_new(json& object) {
    json& m = meta(object);
    m["uid"] = new_uid();
    m["creationTimestamp"] = now_rfc3339();
    m["resourceVersion"] = std::to_string(++rv);
    m["generation"] = 1;
  }

  bool namespace_exists(const std::string& ns) const {
    auto it = store.find(kNamespaceKey);
    return it != store.end() && it->second.count(store_key("", ns));
  }

  bool uid_exists(const std::string& uid) const {
    for (const auto& [key, objects] : store) {
      for (const auto& [k, object] : objects) {
        if (uid_of(object) == uid) return true;
      }
    }
    return false;
  }

  void emit(const std::string& key, const std::string& ns, const std::string& type,
            const json& object, const json& old_object = json()) {
    history.push_back({rv, key, ns, type, object, old_object});
    while (history.size() > options.history_limit) {
      compacted_rv = history.front().rv;
      history.pop_front();
    }
    changed.notify_all();
  }

  // --- CRDs ---

  void register_crd(const json& crd) {
    unregister_crd(name_of(crd));
    const json& spec = crd.value("spec", json::object());
    const json& names = spec.value("names", json::object());
    for (const auto& version : spec.value("versions", json::array())) {
      if (!version.value("served", true)) continue;
      ResourceType t;
      t.group = str(spec, "group");
      t.version = str(version, "name");
      t.plural = str(names, "plural");
      t.singular = str(names, "singular");
      t.kind = str(names, "kind");
      t.namespaced = str(spec, "scope") != "Cluster";
      t.short_names = names.value("shortNames", std::vector<std::string>{});
      t.categories = names.value("categories", std::vector<std::string>{});
      t.custom = true;
      const json& sub = version.value("subresources", json::object());
      t.status_subresource = sub.contains("status");
      if (sub.contains("scale")) {
        const json& scale = sub["scale"];
        t.scale = ScaleSpec{str(scale, "specReplicasPath"), str(scale, "statusReplicasPath"),
                            str(scale, "labelSelectorPath")};
      }
      t.schema = version.value("schema", json::object()).value("openAPIV3Schema", json::object());
      t.printer_columns = version.value("additionalPrinterColumns", json::array());
      types.push_back(std::move(t));
    }
  }

  void unregister_crd(const std::string& crd_name) {
    types.erase(std::remove_if(types.begin(), types.end(),
                               [&](const ResourceType& t) {
                                 return t.custom && t.plural + "." + t.group == crd_name;
                               }),
                types.end());
  }

  std::optional<Failure> validate_crd(const ResourceType& t, const json& crd) {
    const json& spec = crd.value("spec", json::object());
    const json& names = spec.value("names", json::object());
    json causes = json::array();
    if (str(spec, "group").empty())
      causes.push_back(cause("FieldValueRequired", "spec.group", "Required value"));
    if (str(names, "plural").empty())
      causes.push_back(cause("FieldValueRequired", "spec.names.plural", "Required value"));
    if (str(names, "kind").empty())
      causes.push_back(cause("FieldValueRequired", "spec.names.kind", "Required value"));
    std::string scope = str(spec, "scope");
    if (scope != "Namespaced" && scope != "Cluster") {
      causes.push_back(cause(
          "FieldValueNotSupported", "spec.scope",
          "Unsupported value: \"" + scope + "\": supported values: \"Cluster\", \"Namespaced\""));
    }
    if (!spec.contains("versions") || !spec["versions"].is_array() || spec["versions"].empty()) {
      causes.push_back(cause("FieldValueRequired", "spec.versions", "Required value"));
    }
    std::string expected = str(names, "plural") + "." + str(spec, "group");
    if (name_of(crd) != expected) {
      causes.push_back(cause(
          "FieldValueInvalid", "metadata.name",
          "Invalid value: \"" + name_of(crd) + "\": must be spec.names.plural+\".\"+spec.group"));
    }
    if (causes.empty()) return std::nullopt;
    return invalid(t, name_of(crd), causes);
  }

  // --- writes (mu held) ---

  // Custom resources: schema defaults, then validation.
  std::optional<Failure> admit(const ResourceType& t, json& object) {
    if (t.plural == "customresourcedefinitions" && t.group == "apiextensions.k8s.io") {
      return validate_crd(t, object);
    }
    if (!t.custom) return std::nullopt;
    apply_defaults(t.schema, object);
    json causes = json::array();
    validate_schema(t.schema, object, "", &causes);
    if (causes.empty()) return std::nullopt;
    return invalid(t, name_of(object), causes);
  }

  json spec_part(const ResourceType& t, const json& object) const {
    json copy = object;
    copy.erase("metadata");
    copy.erase("kind");
    copy.erase("apiVersion");
    if (t.status_subresource) copy.erase("status");
    return copy;
  }

  http::Response create(const ResourceType& t, const std::string& ns, json object) {
    if (!object.is_object())
      return failure_reply(bad_request("the request body must be a JSON object"));
    std::string api_version = str(object, "apiVersion");
    if (!api_version.empty() && api_version != t.api_version()) {
      return failure_reply(bad_request("the API version in the data (" + api_version +
                                       ") does not match the expected API version (" +
                                       t.api_version() + ")"));
    }
    std::string kind = str(object, "kind");
    if (!kind.empty() && kind != t.kind) {
      return failure_reply(bad_request("the kind in the data (" + kind +
                                       ") does not match the expected kind (" + t.kind + ")"));
    }
    object["apiVersion"] = t.api_version();
    object["kind"] = t.kind;
    json& m = meta(object);
    if (t.namespaced) {
      std::string body_ns = str(m, "namespace");
      if (!body_ns.empty() && body_ns != ns) {
        return failure_reply(
            bad_request("the namespace of the provided object does not match the namespace sent on "
                        "the request"));
      }
      if (!namespace_exists(ns)) {
        return failure_reply(not_found(*find_type("", "v1", "namespaces"), ns));
      }
      m["namespace"] = ns;
    } else {
      m.erase("namespace");
    }
    auto& objects = store[t.store_key()];
    std::string name = str(m, "name");
    if (name.empty() && !str(m, "generateName").empty()) {
      do {
        name = str(m, "generateName") + random_suffix(5, "bcdfghjklmnpqrstvwxz2456789");
      } while (objects.count(store_key(ns, name)));
      m["name"] = name;
    }
    if (name.empty()) {
      return failure_reply(invalid(t, "",
                                   json::array({cause("FieldValueRequired", "metadata.name",
                                                      "name or generateName is required")})));
    }
    if (!valid_name(name)) {
      return failure_reply(invalid(
          t, name,
          json::array({cause("FieldValueInvalid", "metadata.name",
                             "Invalid value: \"" + name +
                                 "\": a lowercase RFC 1123 subdomain must consist of lower case "
                                 "alphanumeric characters, '-' or '.'")})));
    }
    if (objects.count(store_key(ns, name))) {
      return failure_reply({409, "AlreadyExists",
                            t.qualified() + " \"" + name + "\" already exists",
                            details_for(t, name)});
    }
    for (const char* server_field : {"deletionTimestamp", "deletionGracePeriodSeconds", "uid",
                                     "resourceVersion", "creationTimestamp"}) {
      m.erase(server_field);
    }
    if (t.status_subresource) object.erase("status");
    if (auto failure = admit(t, object)) return failure_reply(*failure);
    stamp_new(object);
    if (t.plural == "customresourcedefinitions" && t.group == "apiextensions.k8s.io") {
      object["status"] = {
          {"acceptedNames", object["spec"]["names"]},
          {"storedVersions", json::array()},
          {"conditions",
           json::array({{{"type", "NamesAccepted"}, {"status", "True"}, {"reason", "NoConflicts"}},
                        {{"type", "Established"},
                         {"status", "True"},
                         {"reason", "InitialNamesAccepted"}}})}};
      register_crd(object);
    }
    if (t.plural == "namespaces" && t.group.empty()) object["status"] = {{"phase", "Active"}};
    objects[store_key(ns, name)] = object;
    emit(t.store_key(), ns, "ADDED", object);
    collect_if_owners_gone(t, ns, store_key(ns, name), object);
    return json_reply(201, object);
  }

  // The garbage collector's absent-owner rule: an object created with ownerReferences
  // none of whose uids exist (its owners were deleted before it was written) is deleted
  // right after its creation (or gets a deletionTimestamp when it carries finalizers).
  void collect_if_owners_gone(const ResourceType& t, const std::string& ns, const std::string& key,
                              const json& object) {
    const json refs = meta_of(object).value("ownerReferences", json::array());
    if (!refs.is_array() || refs.empty()) return;
    for (const auto& ref : refs) {
      if (uid_exists(str(ref, "uid"))) return;
    }
    if (has_finalizers(object)) {
      json next = object;
      meta(next)["deletionTimestamp"] = now_rfc3339();
      meta(next)["deletionGracePeriodSeconds"] = 0;
      store_deletion_mark(t, ns, key, object, next);
    } else {
      remove(t, ns, key, object, false);
    }
  }

  // Replaces `current` by `next` (already admitted): generation, resourceVersion,
  // finalizer-driven removal and the watch event. No-op writes change nothing.
  http::Response commit(const ResourceType& t, const std::string& ns, const json& current,
                        json next) {
    json& m = meta(next);
    const json& old_meta = meta_of(current);
    for (const char* kept : {"uid", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "namespace", "name"}) {
      if (old_meta.contains(kept)) {
        m[kept] = old_meta[kept];
      } else {
        m.erase(kept);
      }
    }
    int64_t generation = old_meta.value("generation", int64_t{1});
    if (spec_part(t, next) != spec_part(t, current)) ++generation;
    m["generation"] = generation;
    m["resourceVersion"] = old_meta.value("resourceVersion", "");
    next["apiVersion"] = current.value("apiVersion", t.api_version());
    next["kind"] = t.kind;
    if (next == current) return json_reply(200, current);
    m["resourceVersion"] = std::to_string(++rv);
    std::string key = store_key(ns, name_of(current));
    if (m.contains("deletionTimestamp") && !has_finalizers(next)) {
      remove(t, ns, key, next, /*orphan=*/false);
      return json_reply(200, next);
    }
    store[t.store_key()][key] = next;
    if (t.plural == "customresourcedefinitions" && t.group == "apiextensions.k8s.io")
      register_crd(next);
    emit(t.store_key(), ns, "MODIFIED", next, current);
    return json_reply(200, next);
  }

  // Takes `object` out of the store (mu held), then cascades to its dependents.
  void remove(const ResourceType& t, const std::string& ns, const std::string& key, json object,
              bool orphan) {
    store[t.store_key()].erase(key);
    meta(object)["resourceVersion"] = std::to_string(++rv);
    emit(t.store_key(), ns, "DELETED", object);
    if (t.plural == "customresourcedefinitions" && t.group == "apiextensions.k8s.io") {
      const json& spec = object.value("spec", json::object());
      std::string custom_key =
          str(spec, "group") + "/" + str(spec.value("names", json::object()), "plural");
      std::vector<const ResourceType*> served;
      for (const auto& type : types) {
        if (type.custom && type.store_key() == custom_key) served.push_back(&type);
      }
      if (!served.empty()) {
        ResourceType custom = *served.front();
        auto objects = store[custom_key];
        for (const auto& [k, o] : objects)
          remove(custom, str(meta_of(o), "namespace"), k, o, false);
      }
      store.erase(custom_key);
      unregister_crd(name_of(object));
    }
    if (t.plural == "namespaces" && t.group.empty()) {
      std::string deleted_ns = name_of(object);
      for (const auto& type : std::vector<ResourceType>(types)) {
        if (!type.namespaced || !store.count(type.store_key())) continue;
        auto objects = store[type.store_key()];
        for (const auto& [k, o] : objects) {
          if (str(meta_of(o), "namespace") == deleted_ns) remove(type, deleted_ns, k, o, false);
        }
      }
    }
    cascade(uid_of(object), orphan);
  }

  const ResourceType* type_for_store_key(const std::string& key) const {
    for (const auto& t : types) {
      if (t.store_key() == key) return &t;
    }
    return nullptr;
  }

  // Background garbage collection: dependents whose owners are all gone are deleted
  // (or get a deletionTimestamp when they carry finalizers); Orphan strips the
  // ownerReference instead.
  void cascade(const std::string& owner_uid, bool orphan) {
    if (owner_uid.empty()) return;
    struct Dependent {
      std::string store_key;
      std::string key;
    };
    std::vector<Dependent> dependents;
    for (const auto& [skey, objects] : store) {
      for (const auto& [key, object] : objects) {
        const json& refs = meta_of(object).value("ownerReferences", json::array());
        for (const auto& ref : refs) {
          if (str(ref, "uid") == owner_uid) dependents.push_back({skey, key});
        }
      }
    }
    for (const Dependent& d : dependents) {
      const ResourceType* type = type_for_store_key(d.store_key);
      auto& objects = store[d.store_key];
      auto it = objects.find(d.key);
      if (!type || it == objects.end()) continue;
      ResourceType t = *type;
      json object = it->second;
      std::string ns = str(meta_of(object), "namespace");
      json refs = meta_of(object).value("ownerReferences", json::array());
      json remaining = json::array();
      bool other_owner_alive = false;
      for (const auto& ref : refs) {
        if (str(ref, "uid") == owner_uid) continue;
        remaining.push_back(ref);
        if (uid_exists(str(ref, "uid"))) other_owner_alive = true;
      }
      if (orphan || other_owner_alive) {
        json next = object;
        if (remaining.empty()) {
          meta(next).erase("ownerReferences");
        } else {
          meta(next)["ownerReferences"] = remaining;
        }
        commit(t, ns, object, next);
      } else if (has_finalizers(object)) {
        if (!meta_of(object).contains("deletionTimestamp")) {
          json next = object;
          meta(next)["deletionTimestamp"] = now_rfc3339();
          meta(next)["deletionGracePeriodSeconds"] = 0;
          store_deletion_mark(t, ns, d.key, object, next);
        }
      } else {
        remove(t, ns, d.key, object, false);
      }
    }
  }

  void store_deletion_mark(const ResourceType& t, const std::string& ns, const std::string& key,
                           const json& current, json next) {
    meta(next)["resourceVersion"] = std::to_string(++rv);
    store[t.store_key()][key] = next;
    emit(t.store_key(), ns, "MODIFIED", next, current);
  }

  // Checks a write's resourceVersion precondition against the stored object.
  static bool stale(const json& body, const json& current) {
    std::string wanted = str(meta_of(body), "resourceVersion");
    return !wanted.empty() && wanted != str(meta_of(current), "resourceVersion");
  }

  http::Response update(const ResourceType& t, const std::string& ns, const std::string& name,
                        const json& current, json body) {
    if (!body.is_object())
      return failure_reply(bad_request("the request body must be a JSON object"));
    if (!name_of(body).empty() && name_of(body) != name) {
      return failure_reply(bad_request("the name of the object (" + name_of(body) +
                                       ") does not match the name on the URL (" + name + ")"));
    }
    if (stale(body, current)) return failure_reply(conflict(t, name));
    if (t.status_subresource) {
      if (current.contains("status")) {
        body["status"] = current["status"];
      } else {
        body.erase("status");
      }
    }
    meta(body)["name"] = name;
    if (auto failure = admit(t, body)) return failure_reply(*failure);
    return commit(t, ns, current, std::move(body));
  }

  http::Response update_status(const ResourceType& t, const std::string& ns,
                               const std::string& name, const json& current, const json& body) {
    if (!body.is_object())
      return failure_reply(bad_request("the request body must be a JSON object"));
    if (stale(body, current)) return failure_reply(conflict(t, name));
    json next = current;
    if (body.contains("status")) {
      next["status"] = body["status"];
    } else {
      next.erase("status");
    }
    if (auto failure = admit(t, next)) return failure_reply(*failure);
    return commit(t, ns, current, std::move(next));
  }

  json scale_of(const ResourceType& t, const json& object) const {
    const ScaleSpec& s = *t.scale;
    const json& m = meta_of(object);
    json scale = {{"kind", "Scale"},
                  {"apiVersion", "autoscaling/v1"},
                  {"metadata",
                   {{"name", str(m, "name")},
                    {"namespace", str(m, "namespace")},
                    {"uid", str(m, "uid")},
                    {"resourceVersion", str(m, "resourceVersion")},
                    {"creationTimestamp", m.value("creationTimestamp", "")}}},
                  {"spec", json::object()},
                  {"status", {{"replicas", 0}}}};
    json::json_pointer spec_ptr = pointer_for(s.spec_replicas_path);
    if (object.contains(spec_ptr)) scale["spec"]["replicas"] = object[spec_ptr];
    json::json_pointer status_ptr = pointer_for(s.status_replicas_path);
    if (object.contains(status_ptr)) scale["status"]["replicas"] = object[status_ptr];
    if (!s.label_selector_path.empty()) {
      json::json_pointer selector_ptr = pointer_for(s.label_selector_path);
      if (object.contains(selector_ptr)) scale["status"]["selector"] = object[selector_ptr];
    } else {
      std::string selector;
      const json& labels = object.value("spec", json::object())
                               .value("selector", json::object())
                               .value("matchLabels", json::object());
      for (const auto& [k, v] : labels.items()) {
        if (!selector.empty()) selector += ",";
        selector += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      }
      scale["status"]["selector"] = selector;
    }
    return scale;
  }

  http::Response update_scale(const ResourceType& t, const std::string& ns, const std::string& name,
                              const json& current, const json& scale) {
    if (stale(scale, current)) return failure_reply(conflict(t, name));
    json replicas = scale.value("spec", json::object()).value("replicas", json());
    if (!replicas.is_number_integer() || replicas.get<int64_t>() < 0) {
      return failure_reply(invalid(
          t, name,
          json::array({cause(
              "FieldValueInvalid", "spec.replicas",
              "Invalid value: " + replicas.dump() + ": must be greater than or equal to 0")})));
    }
    json next = current;
    next[pointer_for(t.scale->spec_replicas_path)] = replicas;
    if (auto failure = admit(t, next)) return failure_reply(*failure);
    http::Response committed = commit(t, ns, current, std::move(next));
    if (committed.status != 200) return committed;
    return json_reply(200, scale_of(t, json::parse(committed.body)));
  }

  // Applies a PATCH body of the request's content type to `target`.
  static std::optional<Failure> apply_patch(const ResourceType& t, const std::string& content_type,
                                            const std::string& body, json* target) {
    std::string type = content_type.substr(0, content_type.find(';'));
    json patch = json::parse(body, nullptr, false);
    if (patch.is_discarded()) return bad_request("the patch body is not valid JSON");
    if (type == "application/merge-patch+json" ||
        (type == "application/strategic-merge-patch+json" && !t.custom)) {
      if (!patch.is_object()) return bad_request("a merge patch must be a JSON object");
      target->merge_patch(patch);
      return std::nullopt;
    }
    if (type == "application/json-patch+json") {
      if (!patch.is_array()) return bad_request("a JSON patch must be a JSON array");
      try {
        *target = target->patch(patch);
      } catch (const json::exception& e) {
        return Failure{422, "Invalid",
                       std::string("the JSON patch could not be applied: ") + e.what()};
      }
      return std::nullopt;
    }
    return Failure{415, "UnsupportedMediaType",
                   "the body of the request was in an unknown format - accepted media types "
                   "include: application/json-patch+json, application/merge-patch+json" +
                       std::string(t.custom ? "" : ", application/strategic-merge-patch+json")};
  }

  http::Response patch(const ResourceType& t, const std::string& ns, const std::string& name,
                       const std::string& sub, const json& current, const http::Request& req) {
    if (sub == "scale") {
      json scale = scale_of(t, current);
      if (auto f = apply_patch(t, req.header("content-type"), req.body, &scale))
        return failure_reply(*f);
      return update_scale(t, ns, name, current, scale);
    }
    json patched = current;
    if (auto f = apply_patch(t, req.header("content-type"), req.body, &patched))
      return failure_reply(*f);
    if (!patched.is_object())
      return failure_reply(bad_request("the patched object is not a JSON object"));
    if (stale(patched, current)) return failure_reply(conflict(t, name));
    if (sub == "status") return update_status(t, ns, name, current, patched);
    if (name_of(patched) != name) {
      return failure_reply(bad_request("the name of the object (" + name_of(patched) +
                                       ") does not match the name on the URL (" + name + ")"));
    }
    return update(t, ns, name, current, std::move(patched));
  }

  http::Response remove_request(const ResourceType& t, const std::string& ns,
                                const std::string& name, const json& current,
                                const http::Request& req) {
    json options = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
    if (!options.is_object())
      return failure_reply(bad_request("DeleteOptions must be a JSON object"));
    std::string policy = str(options, "propagationPolicy");
    if (req.has_query_param("propagationPolicy")) policy = req.query_param("propagationPolicy");
    if (!policy.empty() && policy != "Background" && policy != "Foreground" && policy != "Orphan") {
      return failure_reply(bad_request("unknown propagationPolicy \"" + policy + "\""));
    }
    if (options.contains("orphanDependents") && options["orphanDependents"] == true)
      policy = "Orphan";
    const json& pre = options.value("preconditions", json::object());
    if ((!str(pre, "uid").empty() && str(pre, "uid") != uid_of(current)) ||
        (!str(pre, "resourceVersion").empty() &&
         str(pre, "resourceVersion") != str(meta_of(current), "resourceVersion"))) {
      return failure_reply(conflict(t, name));
    }
    bool orphan = policy == "Orphan";
    std::string key = store_key(ns, name);
    if (has_finalizers(current)) {
      if (orphan) cascade(uid_of(current), true);
      if (meta_of(current).contains("deletionTimestamp")) return json_reply(200, current);
      json next = current;
      meta(next)["deletionTimestamp"] = now_rfc3339();
      meta(next)["deletionGracePeriodSeconds"] = 0;
      store_deletion_mark(t, ns, key, current, next);
      return json_reply(200, store[t.store_key()][key]);
    }
    remove(t, ns, key, current, orphan);
    json details = details_for(t, name);
    details["uid"] = uid_of(current);
    return json_reply(200, {{"kind", "Status"},
                            {"apiVersion", "v1"},
                            {"metadata", json::object()},
                            {"status", "Success"},
                            {"details", details}});
  }

  json present(const ResourceType& t, json object) const {
    object["apiVersion"] = t.api_version();
    object["kind"] = t.kind;
    return object;
  }

  http::Response list(const ResourceType& t, const std::string& ns, const http::Request& req) {
    Matcher matcher;
    if (auto f = parse_matcher(req, &matcher)) return failure_reply(*f);
    int64_t limit = 0;
    if (req.has_query_param("limit")) limit = std::atoll(req.query_param("limit").c_str());
    std::string after;
    std::string token = req.query_param("continue");
    if (!token.empty()) {
      if (token.rfind("k:", 0) != 0) return failure_reply(bad_request("invalid continue token"));
      after = token.substr(2);
    }
    json items = json::array();
    std::string next_token;
    const auto& objects = store[t.store_key()];
    for (auto it = after.empty() ? objects.begin() : objects.upper_bound(after);
         it != objects.end(); ++it) {
      const json& object = it->second;
      if (t.namespaced && !ns.empty() && str(meta_of(object), "namespace") != ns) continue;
      if (!matcher.matches(object)) continue;
      if (limit > 0 && static_cast<int64_t>(items.size()) == limit) {
        next_token = "k:" + std::prev(it)->first;
        break;
      }
      // Like the real server, typed (built-in) list items carry no kind/apiVersion.
      json item = present(t, object);
      if (!t.custom) {
        item.erase("kind");
        item.erase("apiVersion");
      }
      items.push_back(std::move(item));
    }
    json list_meta = {{"resourceVersion", std::to_string(rv)}};
    if (!next_token.empty()) list_meta["continue"] = next_token;
    if (t.custom && wants_table(req)) {
      return json_reply(200, make_table(t.printer_columns, items, list_meta));
    }
    return json_reply(200, {{"kind", t.kind + "List"},
                            {"apiVersion", t.api_version()},
                            {"metadata", list_meta},
                            {"items", items}});
  }

  // --- discovery ---

  json resource_entries(const std::string& group, const std::string& version) const {
    json out = json::array();
    for (const auto& t : types) {
      if (t.group != group || t.version != version) continue;
      json entry = {{"name", t.plural},
                    {"singularName", t.singular},
                    {"namespaced", t.namespaced},
                    {"kind", t.kind},
                    {"verbs", {"create", "delete", "get", "list", "patch", "update", "watch"}}};
      if (!t.short_names.empty()) entry["shortNames"] = t.short_names;
      if (!t.categories.empty()) entry["categories"] = t.categories;
      out.push_back(entry);
      if (t.status_subresource) {
        out.push_back({{"name", t.plural + "/status"},
                       {"singularName", ""},
                       {"namespaced", t.namespaced},
                       {"kind", t.kind},
                       {"verbs", {"get", "patch", "update"}}});
      }
      if (t.scale) {
        out.push_back({{"name", t.plural + "/scale"},
                       {"singularName", ""},
                       {"namespaced", t.namespaced},
                       {"group", "autoscaling"},
                       {"version", "v1"},
                       {"kind", "Scale"},
                       {"verbs", {"get", "patch", "update"}}});
      }
    }
    return out;
  }

  json group_entry(const std::string& group) const {
    json versions = json::array();
    std::set<std::string> seen;
    for (const auto& t : types) {
      if (t.group != group || !seen.insert(t.version).second) continue;
      versions.push_back({{"groupVersion", group + "/" + t.version}, {"version", t.version}});
    }
    if (versions.empty()) return json();
    return {{"name", group}, {"versions", versions}, {"preferredVersion", versions[0]}};
  }

  http::Response discovery(const Route& route) const {
    if (route.core && route.version.empty()) {
      return json_reply(200, {{"kind", "APIVersions"},
                              {"versions", {"v1"}},
                              {"serverAddressByClientCIDRs",
                               {{{"clientCIDR", "0.0.0.0/0"},
                                 {"serverAddress", "127.0.0.1:" + std::to_string(port)}}}}});
    }
    if (!route.core && route.group.empty()) {
      json groups = json::array();
      std::vector<std::string> order;
      for (const auto& t : types) {
        if (!t.group.empty() && std::find(order.begin(), order.end(), t.group) == order.end()) {
          order.push_back(t.group);
        }
      }
      for (const auto& g : order) groups.push_back(group_entry(g));
      return json_reply(200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}});
    }
    if (!route.core && route.version.empty()) {
      json entry = group_entry(route.group);
      if (entry.is_null())
        return failure_reply({404, "NotFound", "the server could not find the requested resource"});
      entry["kind"] = "APIGroup";
      entry["apiVersion"] = "v1";
      return json_reply(200, entry);
    }
    json resources = resource_entries(route.core ? "" : route.group, route.version);
    if (resources.empty()) {
      return failure_reply({404, "NotFound", "the server could not find the requested resource"});
    }
    std::string group_version = route.core ? route.version : route.group + "/" + route.version;
    return json_reply(200, {{"kind", "APIResourceList"},
                            {"apiVersion", "v1"},
                            {"groupVersion", group_version},
                            {"resources", resources}});
  }

  // --- faults and counters ---

  std::optional<http::Response> injected_fault(const http::Request& req) {
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if (!it->method.empty() && it->method != req.method) continue;
      if (!it->path_substring.empty() && req.target.find(it->path_substring) == std::string::npos)
        continue;
      FaultRule rule = *it;
      if (--it->remaining <= 0) faults.erase(it);
      Failure f{rule.http_status, rule.http_status == 429 ? "TooManyRequests" : "InternalError",
                "injected fault: " + std::to_string(rule.http_status)};
      if (rule.retry_after_s > 0) f.details["retryAfterSeconds"] = rule.retry_after_s;
      return failure_reply(f);
    }
    return std::nullopt;
  }

  // --- random faults (FaultProfile; mu held) ---

  // True with probability `p`; counts a hit under `name`.
  bool draw(double p, const char* name) {
    if (p <= 0) return false;
    bool hit = std::uniform_real_distribution<double>(0.0, 1.0)(fault_rng) < p;
    if (hit) ++injected[name];
    return hit;
  }

  int64_t draw_ms(int64_t max_ms) {
    if (max_ms <= 0) return 0;
    return std::uniform_int_distribution<int64_t>(0, max_ms)(fault_rng);
  }

  // The faults any request of a resource may meet before it is handled: 429, 500, and
  // 410 for a list that names a resourceVersion or continues one.
  std::optional<http::Response> random_fault(const http::Request& req, const std::string& verb) {
    if (draw(profile.throttle, "throttle")) {
      Failure f{429, "TooManyRequests", "Too many requests, please try again later."};
      f.details["retryAfterSeconds"] = profile.retry_after_s;
      return failure_reply(f);
    }
    if (draw(profile.server_error, "server_error")) {
      Failure f{500, "InternalError",
                "Internal error occurred: injected fault (etcdserver: request timed out)"};
      f.details["causes"] = json::array({{{"message", "etcdserver: request timed out"}}});
      return failure_reply(f);
    }
    if (verb != "list") return std::nullopt;
    std::string rv_text = req.query_param("resourceVersion");
    bool continues = !req.query_param("continue").empty();
    bool pinned = !rv_text.empty() && rv_text != "0";
    if ((continues || pinned) && draw(profile.gone, "gone")) {
      return failure_reply(
          {410, "Expired",
           continues ? "The provided continue parameter is too old to display a consistent list "
                       "result. You can start a new list without the continue parameter."
                     : "too old resource version: " + rv_text + " (" + std::to_string(rv) + ")"});
    }
    return std::nullopt;
  }

  // A committed write answered as if the server's deadline had passed first.
  http::Response lost_response_or(http::Response response) {
    if (response.status < 200 || response.status >= 300) return response;
    if (!draw(profile.lost_response, "lost_response")) return response;
    return failure_reply(
        {504, "Timeout",
         "Timeout: request did not complete within requested timeout - context deadline "
         "exceeded"});
  }
};

// ---------------------------------------------------------------------------
// Watch

namespace {

std::string event_line(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}

// The ERROR event a watch gets when its resourceVersion is older than the history.
std::string expired_event(const std::string& message) {
  return event_line("ERROR", {{"kind", "Status"},
                              {"apiVersion", "v1"},
                              {"metadata", json::object()},
                              {"status", "Failure"},
                              {"reason", "Expired"},
                              {"code", 410},
                              {"message", message}});
}

// What the profile does to one watch: nothing, cut it, or silence it, at `at`.
struct WatchFault {
  enum class Kind { kNone, kDrop, kStall } kind = Kind::kNone;
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::time_point::max();
};

WatchFault draw_watch_fault(ApiServer::State& s) {
  WatchFault fault;
  if (s.draw(s.profile.watch_drop, "watch_drop")) {
    fault.kind = WatchFault::Kind::kDrop;
  } else if (s.draw(s.profile.watch_stall, "watch_stall")) {
    fault.kind = WatchFault::Kind::kStall;
  } else {
    return fault;
  }
  fault.at = std::chrono::steady_clock::now() +
             std::chrono::milliseconds(s.draw_ms(s.profile.watch_fault_after_ms));
  return fault;
}

std::string verb_for(const http::Request& req, const Route& route) {
  if (route.kind == Route::Kind::kDiscovery) return "discovery";
  if (req.method == "GET") {
    if (!route.name.empty()) return "get";
    std::string w = req.query_param("watch");
    return w == "true" || w == "1" ? "watch" : "list";
  }
  if (req.method == "POST") return "create";
  if (req.method == "PUT") return "update";
  if (req.method == "PATCH") return "patch";
  if (req.method == "DELETE") return "delete";
  return "other";
}

}  // namespace

namespace {

void run_watch(ApiServer::State& s, const ResourceType& type, const std::string& ns,
               const http::Request& req, http::Responder& out) {
  Matcher matcher;
  if (auto f = parse_matcher(req, &matcher)) {
    out.send(failure_reply(*f));
    return;
  }
  bool bookmarks = req.query_param("allowWatchBookmarks") == "true";
  int64_t timeout_s = 1800;
  if (req.has_query_param("timeoutSeconds"))
    timeout_s = std::atoll(req.query_param("timeoutSeconds").c_str());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::string rv_text = req.query_param("resourceVersion");
  ResourceType t = type;  // the type may be unregistered while we watch
  std::string key = t.store_key();
  auto in_scope = [&](const std::string& event_ns) {
    return !t.namespaced || ns.empty() || event_ns == ns;
  };

  std::string initial;
  int64_t cursor = 0;
  int64_t drop_generation = 0;
  WatchFault fault;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    drop_generation = s.drop_generation;
    if (rv_text.empty() || rv_text == "0") {
      for (const auto& [k, object] : s.store[key]) {
        if (in_scope(str(meta_of(object), "namespace")) && matcher.matches(object)) {
          initial += event_line("ADDED", s.present(t, object));
        }
      }
      cursor = s.rv;
    } else {
      char* end = nullptr;
      cursor = std::strtoll(rv_text.c_str(), &end, 10);
      if (!end || *end != '\0' || cursor < 0) {
        out.send(failure_reply(bad_request("invalid resourceVersion \"" + rv_text + "\"")));
        return;
      }
      bool expired = cursor < s.compacted_rv;
      if (expired || s.draw(s.profile.gone, "gone")) {
        out.begin_stream(200, "application/json");
        out.write(expired_event("too old resource version: " + rv_text + " (" +
                                std::to_string((expired ? s.compacted_rv : s.rv) + 1) + ")"));
        out.end_stream();
        return;
      }
    }
    fault = draw_watch_fault(s);
    ++s.open_watches;
  }
  if (!out.begin_stream(200, "application/json")) {
    std::lock_guard<std::mutex> lock(s.mu);
    --s.open_watches;
    return;
  }
  bool ok = initial.empty() || out.write(initial);
  auto bookmark_interval =
      std::chrono::milliseconds(std::max<int64_t>(1, s.options.bookmark_interval_ms));
  auto next_bookmark = std::chrono::steady_clock::now() + bookmark_interval;
  bool cut = false;  // end without the last chunk, as a lost connection does
  while (ok) {
    std::string batch;
    bool end = false;
    if (std::chrono::steady_clock::now() >= fault.at) {
      cut = true;
      break;
    }
    {
      std::unique_lock<std::mutex> lock(s.mu);
      s.changed.wait_for(lock, std::chrono::milliseconds(100), [&] {
        return s.rv > cursor || s.stopping || s.drop_generation != drop_generation ||
               std::chrono::steady_clock::now() >= std::min(deadline, next_bookmark);
      });
      if (s.stopping || s.drop_generation != drop_generation) {
        end = true;
      } else if (cursor < s.compacted_rv) {
        batch = expired_event("too old resource version: " + std::to_string(cursor));
        end = true;
      } else {
        auto first = std::upper_bound(s.history.begin(), s.history.end(), cursor,
                                      [](int64_t v, const Event& e) { return v < e.rv; });
        for (auto it = first; it != s.history.end(); ++it) {
          if (it->store_key != key || !in_scope(it->ns)) continue;
          bool now = matcher.matches(it->object);
          std::string type = it->type;
          if (type == "MODIFIED") {
            bool before = matcher.matches(it->old_object);
            if (!before && !now) continue;
            if (!before) type = "ADDED";
            if (!now) type = "DELETED";
          } else if (!now) {
            continue;
          }
          batch += event_line(type, s.present(t, it->object));
        }
        cursor = s.rv;
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline) end = true;
        if (bookmarks && now >= next_bookmark) {
          batch +=
              event_line("BOOKMARK", {{"kind", t.kind},
                                      {"apiVersion", t.api_version()},
                                      {"metadata", {{"resourceVersion", std::to_string(cursor)}}}});
        }
        if (now >= next_bookmark) next_bookmark = now + bookmark_interval;
      }
    }
    if (!batch.empty()) ok = out.write(batch);
    if (end || out.client_gone()) break;
  }
  if (cut && fault.kind == WatchFault::Kind::kStall) {
    std::unique_lock<std::mutex> lock(s.mu);
    s.changed.wait_for(lock, std::chrono::milliseconds(s.profile.stall_ms),
                       [&] { return s.stopping; });
  }
  if (ok && !cut) out.end_stream();
  std::lock_guard<std::mutex> lock(s.mu);
  --s.open_watches;
}

void handle(ApiServer::State& s, const http::Request& req, http::Responder& out) {
  int64_t latency = s.latency_ms.load();
  if (latency > 0) std::this_thread::sleep_for(std::chrono::milliseconds(latency));
  if (req.path == "/version") {
    out.send(json_reply(200, {{"major", "1"},
                              {"minor", "32"},
                              {"gitVersion", "v1.32.0-moeserve-test"},
                              {"platform", "linux/amd64"}}));
    return;
  }
  if (req.path == "/healthz" || req.path == "/readyz" || req.path == "/livez") {
    out.send(http::text_response(200, "ok"));
    return;
  }
  Route route = parse_route(req.path);
  std::string verb = verb_for(req, route);
  std::unique_lock<std::mutex> lock(s.mu);
  ++s.counts[verb];
  if (auto fault = s.injected_fault(req)) {
    lock.unlock();
    out.send(*fault);
    return;
  }
  if (route.kind == Route::Kind::kNotFound) {
    lock.unlock();
    out.send(failure_reply({404, "NotFound", "the server could not find the requested resource"}));
    return;
  }
  if (route.kind == Route::Kind::kDiscovery) {
    http::Response r = s.discovery(route);
    lock.unlock();
    out.send(r);
    return;
  }
  int64_t random_latency_ms = s.draw_ms(s.profile.max_latency_ms);
  if (random_latency_ms > 0) {
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(random_latency_ms));
    lock.lock();
  }
  if (auto fault = s.random_fault(req, verb)) {
    lock.unlock();
    out.send(*fault);
    return;
  }
  const ResourceType* found = s.find_type(route.group, route.version, route.resource);
  if (!found || (!found->namespaced && !route.ns.empty())) {
    lock.unlock();
    out.send(failure_reply({404, "NotFound", "the server could not find the requested resource"}));
    return;
  }
  ResourceType t = *found;
  const std::string& ns = t.namespaced ? route.ns : std::string();
  if (t.namespaced && ns.empty() && (verb != "list" && verb != "watch")) {
    lock.unlock();
    out.send(failure_reply({404, "NotFound", "the server could not find the requested resource"}));
    return;
  }
  if (verb == "watch") {
    lock.unlock();
    run_watch(s, t, ns, req, out);
    return;
  }
  http::Response response;
  std::string content_type = req.header("content-type");
  std::string body_text = req.body;
  if ((verb == "create" || verb == "update") && !content_type.empty() &&
      content_type.rfind("application/json", 0) != 0) {
    auto decoded = content_type.rfind(kProtobufContentType, 0) == 0
                       ? decode_kube_protobuf(req.body)
                       : StatusOr<json>(invalid_argument_error("unknown format"));
    if (!decoded.ok()) {
      lock.unlock();
      out.send(failure_reply({415, "UnsupportedMediaType",
                              "the body of the request was in an unknown format - accepted "
                              "media types include: application/json"}));
      return;
    }
    body_text = decoded->dump();
  }
  if (verb == "list") {
    response = s.list(t, ns, req);
  } else if (verb == "create") {
    json body = json::parse(body_text, nullptr, false);
    response = body.is_discarded()
                   ? failure_reply(bad_request("the request body is not valid JSON"))
                   : s.create(t, ns, std::move(body));
  } else if (route.sub != "" && route.sub != "status" && route.sub != "scale") {
    response = failure_reply({404, "NotFound", "the server could not find the requested resource"});
  } else if ((route.sub == "status" && !t.status_subresource) ||
             (route.sub == "scale" && !t.scale)) {
    response = failure_reply({404, "NotFound", "the server could not find the requested resource"});
  } else {
    auto& objects = s.store[t.store_key()];
    auto it = objects.find(store_key(ns, route.name));
    if (it == objects.end()) {
      response = failure_reply(not_found(t, route.name));
    } else {
      json current = it->second;
      json body = body_text.empty() ? json() : json::parse(body_text, nullptr, false);
      if (verb == "get" && route.sub.empty() && t.custom && wants_table(req)) {
        response = json_reply(200, make_table(t.printer_columns, {current},
                                              {{"resourceVersion", std::to_string(s.rv)}}));
      } else if (verb == "get") {
        response =
            json_reply(200, route.sub == "scale" ? s.scale_of(t, current) : s.present(t, current));
      } else if (verb == "update" && body.is_discarded()) {
        response = failure_reply(bad_request("the request body is not valid JSON"));
      } else if (verb == "update" && s.draw(s.profile.conflict, "conflict")) {
        response = failure_reply(conflict(t, route.name));
      } else if (verb == "update") {
        if (route.sub == "status") {
          response = s.update_status(t, ns, route.name, current, body);
        } else if (route.sub == "scale") {
          response = s.update_scale(t, ns, route.name, current, body);
        } else {
          response = s.update(t, ns, route.name, current, std::move(body));
        }
      } else if (verb == "patch") {
        response = s.patch(t, ns, route.name, route.sub, current, req);
      } else if (verb == "delete" && route.sub.empty()) {
        response = s.remove_request(t, ns, route.name, current, req);
      } else {
        response =
            failure_reply({405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource"});
      }
    }
  }
  if (verb != "get" && verb != "list") response = s.lost_response_or(std::move(response));
  lock.unlock();
  out.send(std::move(response));
}

}  // namespace

ApiServer::ApiServer(ApiServerOptions options)
    : state_(std::make_shared<State>()), options_(options) {
  state_->options = options;
}

ApiServer::~ApiServer() { shutdown(); }

Status ApiServer::start() {
  http::ServerOptions server_options;
  server_options.port = options_.port;
  server_options.handler_threads = options_.handler_threads;
  // One I/O thread: with two, kubectl's keep-alive POSTs intermittently got the common
  // server's plain "400 bad request" (about 1 in 10 `kubectl apply` of the CRD).
  server_options.io_threads = 1;
  server_options.idle_timeout_ms = 600000;
  server_ = std::make_unique<http::Server>(server_options);
  server_->route_prefix("*", "/", [state = state_](const http::Request& req, http::Responder& out) {
    handle(*state, req, out);
  });
  MOESERVE_RETURN_IF_ERROR(server_->start());
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->port = server_->port();
  return ok_status();
}

void ApiServer::shutdown() {
  if (!server_) return;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->changed.notify_all();
  server_->shutdown(2000);
  server_.reset();
}

uint16_t ApiServer::port() const { return server_ ? server_->port() : 0; }

std::string ApiServer::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

std::string test_kubeconfig(const std::string& server_url, const std::string& namespace_name) {
  return "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: " +
         server_url +
         "\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n"
         "    namespace: " +
         namespace_name + "\nusers:\n- name: test\n  user: {}\ncurrent-context: test\n";
}

std::string ApiServer::kubeconfig(const std::string& namespace_name) const {
  return test_kubeconfig(url(), namespace_name);
}

void ApiServer::drop_watches() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    ++state_->drop_generation;
  }
  state_->changed.notify_all();
}

void ApiServer::fail_next(int count, int http_status, const std::string& method,
                          const std::string& path_substring, int retry_after_s) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->faults.push_back({count, http_status, method, path_substring, retry_after_s});
}

void ApiServer::set_latency_ms(int64_t latency_ms) { state_->latency_ms.store(latency_ms); }

void ApiServer::compact_history() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->history.clear();
    state_->compacted_rv = state_->rv;
  }
  state_->changed.notify_all();
}

Status validate_fault_profile(const FaultProfile& p) {
  const std::pair<const char*, double> probabilities[] = {
      {"conflict", p.conflict},           {"gone", p.gone},
      {"throttle", p.throttle},           {"server_error", p.server_error},
      {"lost_response", p.lost_response}, {"watch_drop", p.watch_drop},
      {"watch_stall", p.watch_stall}};
  for (const auto& [name, value] : probabilities) {
    if (!(value >= 0.0 && value <= 1.0)) {
      return invalid_argument_error(std::string("fault profile: ") + name +
                                    " must be a probability in [0, 1], got " +
                                    std::to_string(value));
    }
  }
  const std::pair<const char*, int64_t> amounts[] = {
      {"retry_after_s", p.retry_after_s},
      {"watch_fault_after_ms", p.watch_fault_after_ms},
      {"stall_ms", p.stall_ms},
      {"max_latency_ms", p.max_latency_ms}};
  for (const auto& [name, value] : amounts) {
    if (value < 0) {
      return invalid_argument_error(std::string("fault profile: ") + name +
                                    " must not be negative, got " + std::to_string(value));
    }
  }
  return ok_status();
}

Status ApiServer::set_fault_profile(const FaultProfile& profile) {
  MOESERVE_RETURN_IF_ERROR(validate_fault_profile(profile));
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->profile = profile;
  state_->fault_rng.seed(profile.seed);
  return ok_status();
}

std::map<std::string, int64_t> ApiServer::injected_faults() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->injected;
}

int64_t ApiServer::request_count(const std::string& verb) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->counts.find(verb);
  return it == state_->counts.end() ? 0 : it->second;
}

std::map<std::string, int64_t> ApiServer::request_counts() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->counts;
}

int64_t ApiServer::open_watches() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->open_watches;
}

int64_t ApiServer::resource_version() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->rv;
}

}  // namespace moeserve::testing
