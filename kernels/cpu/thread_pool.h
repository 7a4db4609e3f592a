// A fixed set of persistent worker threads for data-parallel loops. parallel_for splits
// [0, n) into at most size() contiguous chunks of near-equal length, runs chunk 0 on the
// calling thread and the others on the workers, and returns when all are done. Dispatch is
// built for many small calls (a decode step issues hundreds): idle workers spin briefly on
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

 private:
  void worker_loop(int index);
  void run_chunk(int chunk) const;

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // serialises parallel_for callers

  // The current job; written by the caller before it bumps generation_ (release) and read
  // by workers after they observe the new generation (acquire).
  const std::function<void(int64_t, int64_t)>* job_fn_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;

  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // workers that have not yet finished the current generation
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  int sleeping_ = 0;   // workers blocked on wake_cv_; guarded by wake_mu_
  bool stop_ = false;  // guarded by wake_mu_
};

}  // namespace moeserve::kernels
