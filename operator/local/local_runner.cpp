#include "operator/local/local_runner.h"

#include <signal.h>

#include <algorithm>

#include "common/http_client.h"
#include "common/log.h"
#include "operator/local/port_check.h"

namespace moeserve::local {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr int64_t kMaxBackoffMs = 30000;

int64_t steady_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

LocalRunner::LocalRunner(std::vector<GroupProcesses> groups, std::string deployment,
                         RunnerOptions options, ProcessLauncher* launcher)
    : deployment_(std::move(deployment)), options_(std::move(options)), launcher_(launcher) {
  for (auto& g : groups) {
    auto group = std::make_unique<Group>();
    group->spec = std::move(g);
    group->wanted = !options_.start_at_zero;
    groups_.push_back(std::move(group));
  }
  woke_at_ns_ = steady_ns(std::chrono::steady_clock::now());
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
  groups_desired_->Set(wanted_groups());
}

LocalRunner::~LocalRunner() { stop(); }

Status LocalRunner::start_group(Group& group) {
  group.ranks.clear();
  MOESERVE_RETURN_IF_ERROR(check_ports_free(options_.worker_host, group_ports(group.spec)));
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
  if (options_.start_at_zero && !options_.scale_to_zero_after_idle) {
    return invalid_argument_error(
        "local: starting at zero groups needs scale to zero "
        "(spec.autoscaling.scaleToZeroAfterIdleSeconds)");
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& group : groups_) {
      if (group->wanted) MOESERVE_RETURN_IF_ERROR(start_group(*group));
    }
  }
  proxy_ = std::make_unique<gateway::Proxy>(options_.proxy, this);
  http::ServerOptions server_options;
  server_options.host = options_.front_host;
  server_options.port = options_.front_port;
  server_options.handler_threads = 128;  // held and streaming requests each keep one
  server_options.error_response = gateway::Proxy::server_error_response;
  front_ = std::make_unique<http::Server>(server_options);
  proxy_->add_routes(*front_, {registry_});
  http::add_health_routes(*front_, [this]() -> Status {
    if (ready_groups() > 0) return ok_status();
    return unavailable_error("no group is ready yet");
  });
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

int LocalRunner::wanted_groups() const {
  int n = 0;
  for (const auto& g : groups_) n += g->wanted ? 1 : 0;
  return n;
}

std::string LocalRunner::upstream_id(const Group& group) const {
  return qualified_name() + "/g" + std::to_string(group.spec.group);
}

gateway::Snapshot LocalRunner::snapshot() const {
  gateway::ServedModel model;
  model.model = options_.served_model;
  model.deployment = qualified_name();
  model.queue_size = options_.queue_size;
  model.queue_timeout_seconds = options_.queue_timeout_seconds;
  bool starting = false;
  for (const auto& g : groups_) {
    model.groups.push_back({upstream_id(*g), g->spec.endpoint, g->ready.load()});
    starting = starting || (g->wanted && !g->ready);
  }
  model.can_wake = starting || options_.scale_to_zero_after_idle.has_value();
  return {{model}};
}

void LocalRunner::report_waiting(const std::string& deployment, int64_t waiting) {
  if (deployment != qualified_name() || waiting <= 0 || !options_.scale_to_zero_after_idle ||
      wanted_groups() > 0) {
    return;
  }
  woke_at_ns_ = steady_ns(std::chrono::steady_clock::now());
  for (auto& g : groups_) g->wanted = true;
  groups_desired_->Set(wanted_groups());
  log::info("local: waking from zero for held requests",
            {{"deployment", deployment_}, {"waiting", waiting}, {"groups", wanted_groups()}});
}

void LocalRunner::stop_if_idle() {
  if (!options_.scale_to_zero_after_idle || wanted_groups() == 0 || !proxy_) return;
  const gateway::DeploymentActivity activity = proxy_->activity(qualified_name());
  if (activity.in_flight > 0) return;
  const auto woke = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(woke_at_ns_));
  const auto last = std::max(activity.last_request_end, woke);
  const auto idle = std::chrono::steady_clock::now() - last;
  if (idle < *options_.scale_to_zero_after_idle) return;
  for (auto& g : groups_) g->wanted = false;
  groups_desired_->Set(0);
  log::info(
      "local: idle; scaling to zero",
      {{"deployment", deployment_}, {"idle_seconds", std::chrono::duration<double>(idle).count()}});
}

void LocalRunner::supervise() {
  http::ClientOptions client_options;
  client_options.connect_timeout_ms = 300;
  client_options.request_timeout_ms = 1000;
  http::Client client(client_options);
  while (!stopping_) {
    stop_if_idle();
    for (auto& group : groups_) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) break;
      auto now = std::chrono::steady_clock::now();
      if (!group->wanted) {
        if (!group->ranks.empty()) {
          log::info("local: stopping group", {{"group", group->spec.group}});
          stop_group(*group, options_.grace);
        }
        continue;
      }
      if (group->ranks.empty()) {
        if (now < group->restart_at) continue;
        if (Status s = start_group(*group); !s.ok()) {
          log::error("local: cannot start group",
                     {{"group", group->spec.group}, {"error", s.to_string()}});
          back_off(*group, now);
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
        back_off(*group, now);
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

void LocalRunner::back_off(Group& group, std::chrono::steady_clock::time_point now) {
  const int64_t backoff_ms =
      std::min<int64_t>(kMaxBackoffMs, 1000LL << std::min(group.failures, 5));
  group.failures += 1;
  group.restart_at = now + std::chrono::milliseconds(backoff_ms);
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
