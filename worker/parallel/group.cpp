#include "worker/parallel/group.h"

#include <string>
#include <utility>
#include <vector>

#include "common/log.h"
#include "worker/parallel/gloo_communicator.h"

namespace moeserve::parallel {

Status validate(const GroupOptions& options) {
  if (options.world_size < 1) return invalid_argument_error("--world-size must be at least 1");
  if (options.rank < 0 || options.rank >= options.world_size) {
    return invalid_argument_error("--rank " + std::to_string(options.rank) + " is outside [0, " +
                                  std::to_string(options.world_size) + ") for --world-size " +
                                  std::to_string(options.world_size));
  }
  if (options.rendezvous_timeout.count() <= 0 || options.collective_timeout.count() <= 0) {
    return invalid_argument_error("rendezvous and collective timeouts must be positive");
  }
  return parse_host_port(options.leader, "--leader").status();
}

StatusOr<std::unique_ptr<Group>> Group::join(const GroupOptions& options) {
  MOESERVE_RETURN_IF_ERROR(validate(options));
  MOESERVE_ASSIGN_OR_RETURN(HostPort leader, parse_host_port(options.leader, "--leader"));
  const Deadline deadline = deadline_after(options.rendezvous_timeout);
  std::unique_ptr<Group> group(new Group());
  group->options_ = options;
  group->rank_ = options.rank;
  group->size_ = options.world_size;
  if (options.rank == 0) {
    StatusOr<std::unique_ptr<StoreServer>> server = StoreServer::start(leader, options.world_size);
    if (!server.ok()) {
      return unavailable_error("rank 0 cannot serve the rendezvous store at " + options.leader +
                               " (is another rank 0 running?): " + server.status().message());
    }
    group->server_ = std::move(server).value();
  }
  MOESERVE_ASSIGN_OR_RETURN(
      group->client_, StoreClient::connect(leader, options.rank, options.world_size, deadline));
  StoreClient& store = *group->client_;
  MOESERVE_RETURN_IF_ERROR(
      store.set("joined/" + std::to_string(options.rank), store.local_host(), remaining(deadline)));
  std::vector<std::string> keys;
  for (int r = 0; r < options.world_size; ++r) keys.push_back("joined/" + std::to_string(r));
  if (Status s = store.wait(keys, std::max(remaining(deadline), std::chrono::milliseconds(1)));
      !s.ok()) {
    return Status(s.code(), "rendezvous: not every rank joined the leader at " + options.leader +
                                " within " + std::to_string(options.rendezvous_timeout.count()) +
                                " ms: " + s.message());
  }
  MOESERVE_ASSIGN_OR_RETURN(
      std::unique_ptr<GlooCommunicator> comm,
      GlooCommunicator::create(store, options.rank, options.world_size, store.local_host(),
                               std::max(remaining(deadline), std::chrono::milliseconds(1))));
  comm->set_timeout(options.collective_timeout);
  group->comm_ = std::move(comm);
  log::info(
      "joined rank group",
      {{"rank", options.rank}, {"world_size", options.world_size}, {"leader", options.leader}});
  return group;
}

Group::~Group() = default;

}  // namespace moeserve::parallel
