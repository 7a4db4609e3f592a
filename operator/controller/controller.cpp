#include "operator/controller/controller.h"

#include "common/log.h"

namespace moeserve::controller {

std::optional<std::string> root_key_for(const nlohmann::json& object, const std::string& root_kind,
                                        bool is_root) {
  const auto& meta = object.value("metadata", nlohmann::json::object());
  std::string ns = meta.value("namespace", "");
  if (is_root) return kube::object_key(object);
  for (const auto& owner : meta.value("ownerReferences", nlohmann::json::array())) {
    if (owner.value("controller", false) && owner.value("kind", "") == root_kind) {
      std::string name = owner.value("name", "");
      return ns.empty() ? name : ns + "/" + name;
    }
  }
  return std::nullopt;
}

Controller::Controller(const kube::Client& client, kube::ResourceRef root,
                       std::vector<kube::ResourceRef> owned, ControllerOptions options,
                       std::shared_ptr<prometheus::Registry> registry)
    : client_(client),
      root_(std::move(root)),
      owned_(std::move(owned)),
      options_(std::move(options)),
      queue_(options_.rate_limit),
      registry_(std::move(registry)) {
  reconcile_total_ = &prometheus::BuildCounter()
                          .Name("moeserve_operator_reconcile_total")
                          .Help("Reconciles by result (success, error, requeue)")
                          .Register(*registry_);
  reconcile_duration_ =
      &prometheus::BuildHistogram()
           .Name("moeserve_operator_reconcile_duration_seconds")
           .Help("Time spent in one reconcile")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                            0.25, 0.5, 1, 2.5, 5, 10});
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("moeserve_operator_queue_depth")
                      .Help("Keys waiting in the work queue")
                      .Register(*registry_)
                      .Add({});
  reflectors_[root_.resource] = std::make_unique<kube::Reflector>(
      client_, root_, options_.ns, handlers_for(true), options_.reflector_options);
  for (const auto& ref : owned_) {
    reflectors_[ref.resource] = std::make_unique<kube::Reflector>(
        client_, ref, options_.ns, handlers_for(false), options_.reflector_options);
  }
}

Controller::~Controller() { stop(); }

kube::ReflectorHandlers Controller::handlers_for(bool is_root) {
  auto queue_root = [this, is_root](const nlohmann::json& object) {
    if (auto key = root_key_for(object, options_.root_kind, is_root)) queue_.add(*key);
  };
  kube::ReflectorHandlers h;
  h.on_add = queue_root;
  h.on_update = [queue_root](const nlohmann::json& old_object, const nlohmann::json& new_object) {
    queue_root(old_object);  // an object may change owner; both sides converge
    queue_root(new_object);
  };
  h.on_delete = queue_root;
  return h;
}

void Controller::start() {
  std::lock_guard<std::mutex> threads_lock(threads_mutex_);
  for (auto& [_, reflector] : reflectors_) {
    threads_.emplace_back([r = reflector.get()] { r->run(); });
  }
  threads_.emplace_back([this] {
    while (!stopping_ && !synced()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (stopping_) return;
    log::info("controller caches synced", {{"workers", options_.workers}});
    std::lock_guard<std::mutex> lock(threads_mutex_);
    if (stopping_) return;
    for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  });
  threads_.emplace_back([this] { resync_loop(); });
}

bool Controller::synced() const {
  for (const auto& [_, reflector] : reflectors_) {
    if (!reflector->has_synced()) return false;
  }
  return true;
}

void Controller::stop() {
  if (stopping_.exchange(true)) return;
  queue_.shut_down();
  for (auto& [_, reflector] : reflectors_) reflector->stop();
  {
    std::lock_guard<std::mutex> lock(resync_mutex_);
    resync_cv_.notify_all();
  }
  // Worker threads are appended by the start thread; join until none are left.
  while (true) {
    std::vector<std::thread> joinable;
    {
      std::lock_guard<std::mutex> lock(threads_mutex_);
      joinable.swap(threads_);
    }
    if (joinable.empty()) break;
    for (auto& t : joinable) t.join();
  }
}

void Controller::resync_loop() {
  std::unique_lock<std::mutex> lock(resync_mutex_);
  while (!stopping_) {
    resync_cv_.wait_for(lock, options_.resync_period, [this] { return stopping_.load(); });
    if (stopping_) break;
    for (const auto& object : reflectors_.at(root_.resource)->items()) {
      queue_.add(kube::object_key(object));
    }
  }
}

void Controller::worker_loop() {
  while (auto key = queue_.get()) {
    process(*key);
    queue_.done(*key);
    queue_depth_->Set(static_cast<double>(queue_.depth()));
  }
}

void Controller::process(const std::string& key) {
  if (!reconciler_) return;
  auto started = std::chrono::steady_clock::now();
  ReconcileResult result = reconciler_->reconcile(key);
  reconcile_duration_->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (!result.status.ok()) {
    reconcile_total_->Add({{"result", "error"}}).Increment();
    int failures = queue_.failures(key);
    (result.status.code() == StatusCode::kConflict ? log::info : log::warn)(
        "reconcile failed; requeued with backoff",
        {{"key", key}, {"error", result.status.to_string()}, {"failures", failures + 1}});
    queue_.add_rate_limited(key);
    return;
  }
  queue_.forget(key);
  if (result.requeue_after) {
    reconcile_total_->Add({{"result", "requeue"}}).Increment();
    queue_.add_after(key, *result.requeue_after);
  } else {
    reconcile_total_->Add({{"result", "success"}}).Increment();
  }
}

std::optional<nlohmann::json> Controller::get(const std::string& resource,
                                              const std::string& key) const {
  auto it = reflectors_.find(resource);
  if (it == reflectors_.end()) return std::nullopt;
  return it->second->get(key);
}

std::vector<nlohmann::json> Controller::list(
    const std::string& resource, const std::string& ns,
    const std::map<std::string, std::string>& labels) const {
  auto it = reflectors_.find(resource);
  if (it == reflectors_.end()) return {};
  // Filtered inside the cache so a reconcile copies only its own objects, not every
  // object of the kind (which made convergence quadratic in the number of deployments).
  return it->second->items_where([&](const nlohmann::json& object) {
    const auto& meta = object["metadata"];
    if (meta.value("namespace", "") != ns) return false;
    if (labels.empty()) return true;
    auto have = meta.find("labels");
    if (have == meta.end()) return false;
    for (const auto& [k, v] : labels) {
      auto found = have->find(k);
      if (found == have->end() || *found != v) return false;
    }
    return true;
  });
}

}  // namespace moeserve::controller
