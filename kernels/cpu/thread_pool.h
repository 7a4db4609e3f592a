// A fixed set of persistent worker threads for data-parallel loops. parallel_for splits
// [0, n) into at most size() contiguous chunks of near-equal length, runs chunk 0 on the
// calling thread and the others on the workers, and returns when all are done;
// parallel_for_balanced cuts finer chunks that threads claim as they go. Dispatch is
// built for many small calls (a decode step issues hundreds): idle workers spin for 1 ms on
// an atomic generation counter before sleeping on a condition variable.
//
// Thread-safety: parallel_for may be called from several threads (calls are serialised).
// A call made from inside a running chunk (nested) runs inline on that thread. `fn` must not
// throw.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moeserve::kernels {

class ThreadPool {
 public:
  // `threads` is the total parallelism including the calling thread; <= 0 means the number
  // of hardware threads.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

  // As parallel_for, but [0, n) is cut into up to max(1, chunks_per_thread) x size()
  // contiguous chunks (never more than n) that threads claim one at a time as they finish
  // the last, so a thread that starts late or runs slower (a worker waking up, a core
  // sharing its memory channel) takes fewer. Which thread runs a chunk is not fixed: use it for
  // work whose result does not depend on the thread (matmul rows, experts, heads), not for
  // per-thread measurements.
  void parallel_for_balanced(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn,
                             int chunks_per_thread = kBalancedChunksPerThread);
  static constexpr int kBalancedChunksPerThread = 4;

 private:
  void run(int64_t n, int chunks, bool balanced, const std::function<void(int64_t, int64_t)>& fn);
  void worker_loop(int index);
  void run_chunk(int chunk) const;
  // Runs this thread's share of the current job: chunk `index`, or claimed chunks.
  void run_share(int index);

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // serialises parallel_for callers

  // The current job; written by the caller before it bumps generation_ (release) and read
  // by workers after they observe the new generation (acquire).
  const std::function<void(int64_t, int64_t)>* job_fn_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  bool job_balanced_ = false;
  std::atomic<int> next_chunk_{0};  // the next unclaimed chunk of a balanced job

  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // workers that have not yet finished the current generation
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  int sleeping_ = 0;   // workers blocked on wake_cv_; guarded by wake_mu_
  bool stop_ = false;  // guarded by wake_mu_
};

}  // namespace moeserve::kernels
