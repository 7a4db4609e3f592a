#include "operator/local/local_runner.h"

#include <signal.h>

#include <algorithm>

#include "common/http_client.h"
#include "common/log.h"
#include "common/metrics.h"

namespace moeserve::local {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr int64_t kMaxBackoffMs = 30000;

http::Response openai_error(int status, const std::string& message, const std::string& type) {
  nlohmann::json body = {
      {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
  return http::json_response(status, body.dump());
}

}  // namespace

LocalRunner::LocalRunner(std::vector<GroupProcesses> groups, std::string deployment,
                         RunnerOptions options, ProcessLauncher* launcher)
    : deployment_(std::move(deployment)), options_(std::move(options)), launcher_(launcher) {
  for (auto& g : groups) {
    auto group = std::make_unique<Group>();
    group->spec = std::move(g);
    groups_.push_back(std::move(group));
  }
  registry_ = std::make_shared<prometheus::Registry>();
  groups_desired_ = &prometheus::BuildGauge()
                         .Name("moeserve_deployment_replicas_desired")
                         .Help("Groups the deployment should run")
                         .Register(*registry_)
                         .Add({{"namespace", "local"}, {"deployment", deployment_}});
  groups_ready_ = &prometheus::BuildGauge()
                       .Name("moeserve_deployment_replicas_ready")
                       .Help("Groups whose rank 0 is ready")
                       .Register(*registry_)
                       .Add({{"namespace", "local"}, {"deployment", deployment_}});
  groups_desired_->Set(static_cast<double>(groups_.size()));
}

LocalRunner::~LocalRunner() { stop(); }

Status LocalRunner::start_group(Group& group) {
  group.ranks.clear();
  for (const auto& rank : group.spec.ranks) {
    std::string log_path;
    if (!options_.logs_dir.empty()) {
      log_path = options_.logs_dir + "/" + deployment_ + "-g" + std::to_string(rank.group) + "-r" +
                 std::to_string(rank.rank) + ".log";
    }
    auto child = launcher_->start(rank.argv, rank.env, log_path);
    if (!child.ok()) {
      stop_group(group, std::chrono::milliseconds(0));
      return child.status();
    }
    log::info("local: started rank", {{"group", rank.group},
                                      {"rank", rank.rank},
                                      {"pid", static_cast<int64_t>((*child)->pid())},
                                      {"port", rank.http_port},
                                      {"log", log_path}});
    group.ranks.push_back(std::move(*child));
  }
  return ok_status();
}

void LocalRunner::stop_group(Group& group, std::chrono::milliseconds grace) {
  group.ready = false;
  for (auto& p : group.ranks) p->signal(SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& p : group.ranks) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!p->wait_for(std::max(left, std::chrono::milliseconds(0)))) {
      p->signal(SIGKILL);
      p->wait_for(std::chrono::milliseconds(5000));
    }
  }
  group.ranks.clear();
}

Status LocalRunner::start() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& group : groups_) MOESERVE_RETURN_IF_ERROR(start_group(*group));
  }
  http::ServerOptions server_options;
  server_options.host = options_.front_host;
  server_options.port = options_.front_port;
  front_ = std::make_unique<http::Server>(server_options);
  front_->route_prefix("*", "/v1/",
                       [this](const http::Request& r, http::Responder& out) { proxy(r, out); });
  http::add_health_routes(*front_, [this]() -> Status {
    if (ready_groups() > 0) return ok_status();
    return unavailable_error("no group is ready yet");
  });
  metrics::add_metrics_route(*front_, {registry_});
  MOESERVE_RETURN_IF_ERROR(front_->start());
  supervisor_ = std::thread([this] { supervise(); });
  return ok_status();
}

uint16_t LocalRunner::front_port() const { return front_ ? front_->port() : 0; }

int LocalRunner::ready_groups() const {
  int n = 0;
  for (const auto& g : groups_) n += g->ready ? 1 : 0;
  return n;
}

void LocalRunner::supervise() {
  http::ClientOptions client_options;
  client_options.connect_timeout_ms = 300;
  client_options.request_timeout_ms = 1000;
  http::Client client(client_options);
  while (!stopping_) {
    for (auto& group : groups_) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) break;
      auto now = std::chrono::steady_clock::now();
      if (group->ranks.empty()) {
        if (now < group->restart_at) continue;
        if (Status s = start_group(*group); !s.ok()) {
          log::error("local: cannot start group",
                     {{"group", group->spec.group}, {"error", s.to_string()}});
        }
        continue;
      }
      bool lost = false;
      for (size_t r = 0; r < group->ranks.size(); ++r) {
        if (!group->ranks[r]->running()) {
          log::warn("local: rank exited; restarting its group",
                    {{"group", group->spec.group}, {"rank", static_cast<int64_t>(r)}});
          lost = true;
        }
      }
      if (lost) {
        stop_group(*group, std::chrono::milliseconds(2000));
        int64_t backoff_ms =
            std::min<int64_t>(kMaxBackoffMs, 1000LL << std::min(group->failures, 5));
        group->failures += 1;
        group->restart_at = now + std::chrono::milliseconds(backoff_ms);
        restarts_ += 1;
        continue;
      }
      auto r = client.send({"GET", group->spec.endpoint + "/readyz", {}, ""});
      bool ready = r.ok() && r->status == 200;
      if (ready && !group->ready) {
        log::info("local: group ready",
                  {{"group", group->spec.group}, {"endpoint", group->spec.endpoint}});
        group->failures = 0;
      }
      group->ready = ready;
    }
    groups_ready_->Set(ready_groups());
    for (int i = 0; i < 10 && !stopping_; ++i) std::this_thread::sleep_for(kPollInterval / 10);
  }
}

void LocalRunner::proxy(const http::Request& request, http::Responder& out) {
  const Group* target = nullptr;
  for (size_t i = 0; i < groups_.size() && !target; ++i) {
    const auto& g = groups_[(next_group_++) % groups_.size()];
    if (g->ready) target = g.get();
  }
  if (!target) {
    auto r = openai_error(503, "no model group is ready yet; retry shortly", "service_unavailable");
    r.headers.emplace_back("Retry-After", "1");
    out.send(std::move(r));
    return;
  }
  http::ClientRequest forward;
  forward.method = request.method;
  forward.url = target->spec.endpoint + request.target;
  forward.body = request.body;
  forward.timeout_ms = 600000;
  for (const auto& [k, v] : request.headers) {
    if (k == "host" || k == "connection" || k == "content-length" || k == "transfer-encoding") {
      continue;
    }
    forward.headers.emplace_back(k, v);
  }
  http::Client client;
  auto upstream = client.open(forward);
  if (!upstream.ok()) {
    out.send(openai_error(502,
                          "group " + std::to_string(target->spec.group) +
                              " did not answer: " + upstream.status().message(),
                          "bad_gateway"));
    return;
  }
  http::Headers headers;
  for (const auto& [k, v] : (*upstream)->headers()) {
    if (k == "retry-after" || k == "x-request-id") headers.emplace_back(k, v);
  }
  headers.emplace_back("X-Moeserve-Group", std::to_string(target->spec.group));
  std::string content_type = (*upstream)->header("content-type");
  if (!out.begin_stream((*upstream)->status(),
                        content_type.empty() ? "application/json" : content_type, headers)) {
    return;
  }
  while (!(*upstream)->done()) {
    auto chunk = (*upstream)->read_some(600000);
    if (!chunk.ok() || !out.write(*chunk)) {
      (*upstream)->close();  // the client left: closing upstream cancels the request there
      return;
    }
  }
  out.end_stream();
}

void LocalRunner::stop() {
  if (stopping_.exchange(true)) return;
  if (front_) front_->shutdown(options_.grace.count());
  if (supervisor_.joinable()) supervisor_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& group : groups_) stop_group(*group, options_.grace);
  log::info("local: stopped", {{"deployment", deployment_}});
}

}  // namespace moeserve::local
