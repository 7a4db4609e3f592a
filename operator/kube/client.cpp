#include "operator/kube/client.h"

#include <random>

#include "operator/kube/errors.h"

namespace moeserve::kube {
namespace {

using nlohmann::json;

std::string_view patch_content_type(PatchType type) {
  switch (type) {
    case PatchType::kMerge: return "application/merge-patch+json";
    case PatchType::kJson: return "application/json-patch+json";
    case PatchType::kStrategicMerge: return "application/strategic-merge-patch+json";
  }
  return "application/merge-patch+json";
}

std::string_view propagation_name(Propagation propagation) {
  switch (propagation) {
    case Propagation::kBackground: return "Background";
    case Propagation::kForeground: return "Foreground";
    case Propagation::kOrphan: return "Orphan";
    case Propagation::kDefault: return "";
  }
  return "";
}

void add_param(std::string* query, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  *query += query->empty() ? "?" : "&";
  *query += std::string(key) + "=" + url_encode(value);
}

std::string object_name(const json& object) {
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto name = meta->find("name");
  return name != meta->end() && name->is_string() ? name->get<std::string>() : "";
}

std::string object_namespace(const json& object) {
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto ns = meta->find("namespace");
  return ns != meta->end() && ns->is_string() ? ns->get<std::string>() : "";
}

// The namespace a write goes to: the argument, else the object's, else the default.
std::string write_namespace(const ResourceRef& ref, const std::string& ns, const json& object,
                            const std::string& fallback) {
  if (!ref.namespaced) return "";
  if (!ns.empty()) return ns;
  std::string from_object = object_namespace(object);
  return from_object.empty() ? fallback : from_object;
}

std::string list_query(const ListOptions& options) {
  std::string query;
  add_param(&query, "labelSelector", options.label_selector);
  add_param(&query, "fieldSelector", options.field_selector);
  if (options.limit > 0) add_param(&query, "limit", std::to_string(options.limit));
  add_param(&query, "continue", options.continue_token);
  add_param(&query, "resourceVersion", options.resource_version);
  return query;
}

}  // namespace

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

int64_t random_watch_timeout_seconds() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_int_distribution<int64_t>(kMinWatchTimeoutS, kMaxWatchTimeoutS)(rng);
}

Client::Client(std::shared_ptr<Transport> transport, std::string server,
               std::string default_namespace)
    : transport_(std::move(transport)),
      server_(std::move(server)),
      default_namespace_(std::move(default_namespace)) {
  while (!server_.empty() && server_.back() == '/') server_.pop_back();
}

StatusOr<std::unique_ptr<Client>> Client::create_for(const Config& config) {
  auto transport = std::make_shared<HttpTransport>(config);
  MOESERVE_RETURN_IF_ERROR(transport->init());
  return std::make_unique<Client>(std::move(transport), config.server, config.namespace_name);
}

std::string Client::path(const ResourceRef& ref, const std::string& ns, const std::string& name,
                         const std::string& subresource) {
  std::string out =
      ref.group.empty() ? "/api/" + ref.version : "/apis/" + ref.group + "/" + ref.version;
  if (ref.namespaced && !ns.empty()) out += "/namespaces/" + ns;
  out += "/" + ref.resource;
  if (!name.empty()) out += "/" + name;
  if (!name.empty() && !subresource.empty()) out += "/" + subresource;
  return out;
}

StatusOr<json> Client::call(const std::string& method, const std::string& target,
                            const std::string& content_type, const std::string& body) const {
  http::ClientRequest request;
  request.method = method;
  request.url = server_ + target;
  request.headers.emplace_back("Accept", "application/json");
  if (!content_type.empty()) request.headers.emplace_back("Content-Type", content_type);
  request.body = body;
  std::string context = method + " " + target;
  auto response = transport_->send(request);
  if (!response.ok()) return response.status().with_context(context);
  if (response->status < 200 || response->status >= 300) {
    return api_error_status(response->status, response->body, response->header("retry-after"),
                            context);
  }
  json value = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return unavailable_error(context + ": response is not JSON: " + response->body.substr(0, 200));
  }
  return value;
}

StatusOr<json> Client::get(const ResourceRef& ref, const std::string& ns, const std::string& name,
                           const std::string& subresource) const {
  return call("GET", path(ref, ns, name, subresource), "", "");
}

StatusOr<ListResult> Client::list(const ResourceRef& ref, const std::string& ns,
                                  const ListOptions& options) const {
  MOESERVE_ASSIGN_OR_RETURN(json list,
                            call("GET", path(ref, ns, "") + list_query(options), "", ""));
  ListResult result;
  auto items = list.find("items");
  if (items != list.end() && items->is_array()) {
    result.items.reserve(items->size());
    for (auto& item : *items) result.items.push_back(std::move(item));
  }
  const json& meta = list.value("metadata", json::object());
  result.resource_version = meta.value("resourceVersion", "");
  result.continue_token = meta.value("continue", "");
  return result;
}

StatusOr<ListResult> Client::list_all(const ResourceRef& ref, const std::string& ns,
                                      ListOptions options) const {
  if (options.limit <= 0) options.limit = kDefaultPageSize;
  MOESERVE_ASSIGN_OR_RETURN(ListResult all, list(ref, ns, options));
  std::string next = all.continue_token;
  while (!next.empty()) {
    options.continue_token = next;
    options.resource_version.clear();  // the continue token pins the snapshot
    MOESERVE_ASSIGN_OR_RETURN(ListResult page, list(ref, ns, options));
    for (auto& item : page.items) all.items.push_back(std::move(item));
    next = page.continue_token;
  }
  all.continue_token.clear();
  return all;
}

StatusOr<json> Client::create(const ResourceRef& ref, const std::string& ns,
                              const json& object) const {
  std::string target = path(ref, write_namespace(ref, ns, object, default_namespace_), "");
  return call("POST", target, "application/json", object.dump());
}

StatusOr<json> Client::update(const ResourceRef& ref, const std::string& ns,
                              const json& object) const {
  std::string name = object_name(object);
  if (name.empty()) return invalid_argument_error("update: object has no metadata.name");
  std::string target = path(ref, write_namespace(ref, ns, object, default_namespace_), name);
  return call("PUT", target, "application/json", object.dump());
}

StatusOr<json> Client::update_status(const ResourceRef& ref, const std::string& ns,
                                     const json& object) const {
  std::string name = object_name(object);
  if (name.empty()) return invalid_argument_error("update_status: object has no metadata.name");
  std::string target =
      path(ref, write_namespace(ref, ns, object, default_namespace_), name, "status");
  return call("PUT", target, "application/json", object.dump());
}

StatusOr<json> Client::patch(const ResourceRef& ref, const std::string& ns, const std::string& name,
                             PatchType type, const json& patch,
                             const std::string& subresource) const {
  std::string target =
      path(ref, ref.namespaced && ns.empty() ? default_namespace_ : ns, name, subresource);
  return call("PATCH", target, std::string(patch_content_type(type)), patch.dump());
}

StatusOr<json> Client::remove(const ResourceRef& ref, const std::string& ns,
                              const std::string& name, Propagation propagation) const {
  std::string target = path(ref, ref.namespaced && ns.empty() ? default_namespace_ : ns, name);
  std::string body;
  if (propagation != Propagation::kDefault) {
    body = json{{"kind", "DeleteOptions"},
                {"apiVersion", "v1"},
                {"propagationPolicy", std::string(propagation_name(propagation))}}
               .dump();
  }
  return call("DELETE", target, body.empty() ? "" : "application/json", body);
}

Status Client::watch(const ResourceRef& ref, const std::string& ns, const WatchOptions& options,
                     const WatchCallback& on_event, const std::atomic<bool>* stop) const {
  int64_t timeout_seconds =
      options.timeout_seconds > 0 ? options.timeout_seconds : random_watch_timeout_seconds();
  std::string query = "?watch=true";
  add_param(&query, "resourceVersion", options.resource_version);
  add_param(&query, "timeoutSeconds", std::to_string(timeout_seconds));
  if (options.allow_bookmarks) add_param(&query, "allowWatchBookmarks", "true");
  add_param(&query, "labelSelector", options.label_selector);
  add_param(&query, "fieldSelector", options.field_selector);
  std::string target = path(ref, ns, "") + query;
  std::string context = "WATCH " + target;

  http::ClientRequest request;
  request.url = server_ + target;
  request.headers.emplace_back("Accept", "application/json");
  request.timeout_ms =
      options.read_timeout_ms > 0 ? options.read_timeout_ms : (timeout_seconds + 30) * 1000;
  auto opened = transport_->open(request);
  if (!opened.ok()) return opened.status().with_context(context);
  std::unique_ptr<http::ResponseStream> stream = std::move(*opened);
  if (stream->status() < 200 || stream->status() >= 300) {
    std::string body;
    while (!stream->done() && body.size() < 65536) {
      auto bytes = stream->read_some();
      if (!bytes.ok() || bytes->empty()) break;
      body += *bytes;
    }
    return api_error_status(stream->status(), body, stream->header("retry-after"), context);
  }
  WatchDecoder decoder;
  std::vector<WatchEvent> events;
  while (true) {
    if (stop && stop->load()) break;
    auto bytes = stream->read_some(request.timeout_ms);
    if (!bytes.ok()) return bytes.status().with_context(context);
    if (bytes->empty() && stream->done()) break;
    events.clear();
    Status decoded = decoder.feed(*bytes, &events);
    for (const WatchEvent& event : events) {
      if (event.type == WatchEventType::kError) {
        int code = event.object.value("code", 0);
        stream->close();
        return to_status(parse_status_object(code, event.object), context);
      }
      if (!on_event(event) || (stop && stop->load())) {
        stream->close();
        return ok_status();
      }
    }
    if (!decoded.ok()) {
      stream->close();
      return Status(StatusCode::kUnavailable, decoded.message()).with_context(context);
    }
  }
  stream->close();
  return ok_status();
}

}  // namespace moeserve::kube
