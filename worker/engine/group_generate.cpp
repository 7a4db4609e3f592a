#include "worker/engine/group_generate.h"

#include <cstring>
#include <fstream>
#include <numeric>
#include <utility>

#include "common/log.h"
#include "worker/engine/batch_generate.h"
#include "worker/engine/expert_parallel.h"

namespace moeserve::engine {
namespace {

void put(std::string& out, const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }

// Results of this rank, serialised for rank 0: per result its request index, tokens,
// stopped flag and prompt logits (samples' log-probabilities stay on their rank).
std::string encode_results(const std::vector<size_t>& indices,
                           const std::vector<GenerateResult>& results) {
  std::string out;
  for (size_t j = 0; j < indices.size(); ++j) {
    const GenerateResult& r = results[j];
    const int64_t header[3] = {static_cast<int64_t>(indices[j]),
                               static_cast<int64_t>(r.tokens.size()),
                               static_cast<int64_t>(r.prompt_logits.size())};
    put(out, header, sizeof(header));
    put(out, r.tokens.data(), r.tokens.size() * sizeof(int32_t));
    put(out, r.prompt_logits.data(), r.prompt_logits.size() * sizeof(float));
    const char stopped = r.stopped ? 1 : 0;
    put(out, &stopped, 1);
  }
  return out;
}

Status decode_results(const char* p, size_t n, std::vector<GenerateResult>* all) {
  const char* end = p + n;
  auto take = [&](void* dst, size_t bytes) {
    if (static_cast<size_t>(end - p) < bytes) return false;
    std::memcpy(dst, p, bytes);
    p += bytes;
    return true;
  };
  while (p < end) {
    int64_t header[3];
    if (!take(header, sizeof(header)) || header[0] < 0 ||
        header[0] >= static_cast<int64_t>(all->size())) {
      return internal_error("generate: malformed results from a rank");
    }
    GenerateResult& r = (*all)[header[0]];
    r.tokens.resize(header[1]);
    r.prompt_logits.resize(header[2]);
    char stopped = 0;
    if (!take(r.tokens.data(), r.tokens.size() * sizeof(int32_t)) ||
        !take(r.prompt_logits.data(), r.prompt_logits.size() * sizeof(float)) ||
        !take(&stopped, 1)) {
      return internal_error("generate: truncated results from a rank");
    }
    r.stopped = stopped != 0;
  }
  return ok_status();
}

}  // namespace

void add_batch_flag(FlagSet& flags, GroupFlags* f) {
  flags.add_string("batch-file", &f->batch_file,
                   "several prompts, one per line as comma-separated token ids, run as a batch");
}

void add_group_flags(FlagSet& flags, GroupFlags* f) {
  flags.add_int("rank", &f->rank, "this process's rank in its expert-parallel group",
                "MOESERVE_RANK");
  flags.add_int("world-size", &f->world_size, "ranks in the group (one model copy)",
                "MOESERVE_WORLD_SIZE");
  flags.add_string("leader", &f->leader, "HOST:PORT where rank 0 serves the rendezvous store",
                   "MOESERVE_LEADER_ADDR");
  flags.add_string("placement", &f->placement,
                   "expert placement JSON ({\"version\":N,\"layers\":[{\"phy2log\":[...]}]}); "
                   "default: contiguous blocks");
  flags.add_int("collective-timeout-ms", &f->collective_timeout_ms,
                "a collective not finished in this time fails the run (lost rank)");
  flags.add_int("rendezvous-timeout-ms", &f->rendezvous_timeout_ms,
                "time for every rank to join rank 0");
}

bool wants_group(const FlagSet& flags) {
  return flags.is_set("world-size") || flags.is_set("leader");
}

StatusOr<std::unique_ptr<parallel::Group>> join_group(const GroupFlags& f) {
  if (f.leader.empty()) {
    return invalid_argument_error("--leader HOST:PORT is required with --world-size");
  }
  parallel::GroupOptions options;
  options.rank = static_cast<int>(f.rank);
  options.world_size = static_cast<int>(f.world_size);
  options.leader = f.leader;
  options.collective_timeout = std::chrono::milliseconds(f.collective_timeout_ms);
  options.rendezvous_timeout = std::chrono::milliseconds(f.rendezvous_timeout_ms);
  return parallel::Group::join(options);
}

StatusOr<std::vector<std::vector<int32_t>>> read_batch_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found_error(path + ": cannot open the batch file");
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    line.erase(line.find_last_not_of(" \t\r") + 1);
    StatusOr<std::vector<int64_t>> ids = parse_int_list(line);
    if (!ids.ok()) {
      return invalid_argument_error(path + ":" + std::to_string(number) + ": " +
                                    ids.status().message());
    }
    prompts.emplace_back(ids->begin(), ids->end());
  }
  if (prompts.empty()) return invalid_argument_error(path + ": no prompts");
  return prompts;
}

StatusOr<ExpertParallelDispatcher*> attach_group_experts(Engine& engine, parallel::Group& group,
                                                         const std::string& placement_path) {
  parallel::Communicator& comm = group.comm();
  const std::vector<int64_t> layers = engine.config().moe_layers();
  StatusOr<parallel::ExpertPlacement> placement =
      placement_path.empty()
          ? parallel::ExpertPlacement::contiguous(comm.size(), engine.config().n_routed_experts,
                                                  layers)
          : parallel::ExpertPlacement::load(placement_path, comm.size(),
                                            engine.config().n_routed_experts, layers);
  MOESERVE_RETURN_IF_ERROR(placement.status());
  return attach_expert_parallel(engine, comm, std::move(placement).value());
}

StatusOr<std::vector<GenerateResult>> generate_in_group(
    Engine& engine, parallel::Group* group, const std::vector<GenerateRequest>& requests,
    const std::string& placement_path) {
  if (group == nullptr) return generate_batch(engine, requests);
  parallel::Communicator& comm = group->comm();
  MOESERVE_ASSIGN_OR_RETURN(ExpertParallelDispatcher * dispatcher,
                            attach_group_experts(engine, *group, placement_path));

  std::vector<size_t> mine;
  std::vector<GenerateRequest> local;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (static_cast<int>(i % comm.size()) == comm.rank()) {
      mine.push_back(i);
      local.push_back(requests[i]);
    }
  }
  ExpertParallelStepper stepper(comm, *dispatcher);
  MOESERVE_ASSIGN_OR_RETURN(std::vector<GenerateResult> local_results,
                            generate_batch(engine, local, &stepper));

  // Gather to rank 0: every rank sends its encoded results to rank 0 only.
  const std::string encoded = encode_results(mine, local_results);
  std::vector<int64_t> send_bytes(comm.size(), 0);
  send_bytes[0] = static_cast<int64_t>(encoded.size());
  MOESERVE_ASSIGN_OR_RETURN(std::vector<int64_t> recv_bytes,
                            parallel::exchange_counts(comm, send_bytes));
  std::string gathered(
      static_cast<size_t>(std::accumulate(recv_bytes.begin(), recv_bytes.end(), int64_t{0})), '\0');
  MOESERVE_RETURN_IF_ERROR(
      comm.all_to_all_v(encoded.data(), send_bytes, gathered.data(), recv_bytes));
  log::info("expert-parallel generate done",
            {{"rank", comm.rank()}, {"sequences", static_cast<int64_t>(mine.size())}});
  if (comm.rank() != 0) return std::vector<GenerateResult>();
  std::vector<GenerateResult> all(requests.size());
  MOESERVE_RETURN_IF_ERROR(decode_results(gathered.data(), gathered.size(), &all));
  return all;
}

}  // namespace moeserve::engine
