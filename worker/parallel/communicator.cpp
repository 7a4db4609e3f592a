#include "worker/parallel/communicator.h"

#include <algorithm>
#include <string>

namespace moeserve::parallel {

StatusOr<std::vector<int64_t>> exchange_counts(Communicator& comm,
                                               std::span<const int64_t> send_counts) {
  const size_t n = static_cast<size_t>(comm.size());
  if (send_counts.size() != n) {
    return invalid_argument_error("exchange_counts: " + std::to_string(send_counts.size()) +
                                  " counts for " + std::to_string(n) + " ranks");
  }
  std::vector<int64_t> recv_counts(n);
  const std::vector<int64_t> eight(n, sizeof(int64_t));
  MOESERVE_RETURN_IF_ERROR(comm.all_to_all_v(send_counts.data(), eight, recv_counts.data(), eight));
  return recv_counts;
}

StatusOr<std::vector<int64_t>> all_reduce_max(Communicator& comm, std::span<const int64_t> values) {
  const size_t n = values.size();
  std::vector<int64_t> all(n * static_cast<size_t>(comm.size()));
  MOESERVE_RETURN_IF_ERROR(
      comm.all_gather(values.data(), static_cast<int64_t>(n * sizeof(int64_t)), all.data()));
  std::vector<int64_t> result(values.begin(), values.end());
  for (size_t r = 0; r < static_cast<size_t>(comm.size()); ++r) {
    for (size_t i = 0; i < n; ++i) result[i] = std::max(result[i], all[r * n + i]);
  }
  return result;
}

}  // namespace moeserve::parallel
