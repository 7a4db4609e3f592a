#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace moeserve::kernels {
namespace {

// How long an idle worker spins before it sleeps: longer than the serial stretches between
// the parallel loops of a step (routing, gathering and norms of a 64-token prefill, the
// sampler between decode steps), far shorter than the gap between requests. Waking a
// sleeping worker costs a futex wake and, in a VM, an inter-processor interrupt: with 76 us
// of spinning (4000 pauses of 19 ns on Zen 5) bench-decode at 2 threads switched context
// 1995 times per run and 9 % of the CPU time of a prefill was idle; with 1 ms, 281-390.
// Bounded by time, not by a count of pauses, because a pause takes 20-140 ns by CPU.
constexpr auto kSpinTime = std::chrono::microseconds(1000);
constexpr int kPausesPerClockRead = 64;
constexpr int kWaitSpinsBeforeYield = 1 << 14;

thread_local bool t_inside_pool_chunk = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  int total = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  total = std::max(total, 1);
  workers_.reserve(total - 1);
  for (int i = 0; i < total - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_ = true;
  }
  wake_cv_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::run_chunk(int chunk) const {
  if (chunk >= job_chunks_) return;
  const int64_t begin = job_n_ * chunk / job_chunks_;
  const int64_t end = job_n_ * (chunk + 1) / job_chunks_;
  t_inside_pool_chunk = true;
  (*job_fn_)(begin, end);
  t_inside_pool_chunk = false;
}

void ThreadPool::run_share(int index) {
  if (!job_balanced_) {
    run_chunk(index);
    return;
  }
  for (int chunk = next_chunk_.fetch_add(1, std::memory_order_relaxed); chunk < job_chunks_;
       chunk = next_chunk_.fetch_add(1, std::memory_order_relaxed)) {
    run_chunk(chunk);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  run(n, static_cast<int>(std::min<int64_t>(n, size())), false, fn);
}

void ThreadPool::parallel_for_balanced(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                                       int chunks_per_thread) {
  run(n, static_cast<int>(std::min<int64_t>(n, int64_t{size()} * std::max(1, chunks_per_thread))),
      true, fn);
}

void ThreadPool::run(int64_t n, int chunks, bool balanced,
                     const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1 || t_inside_pool_chunk) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  job_fn_ = &fn;
  job_n_ = n;
  job_chunks_ = chunks;
  job_balanced_ = balanced;
  next_chunk_.store(0, std::memory_order_relaxed);
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  bool wake = false;
  {
    // Workers decide to sleep under wake_mu_ after re-checking generation_, so bumping it
    // under the same mutex means each worker either sees the new job or is counted here.
    std::lock_guard<std::mutex> lock(wake_mu_);
    generation_.fetch_add(1, std::memory_order_release);
    wake = sleeping_ > 0;
  }
  if (wake) wake_cv_.notify_all();
  run_share(0);
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (++spins < kWaitSpinsBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  while (true) {
    uint64_t current = generation_.load(std::memory_order_acquire);
    const auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
    for (int i = 1; current == seen; ++i) {
      cpu_relax();
      current = generation_.load(std::memory_order_acquire);
      if (i % kPausesPerClockRead == 0 && std::chrono::steady_clock::now() >= spin_until) break;
    }
    if (current == seen) {
      std::unique_lock<std::mutex> lock(wake_mu_);
      ++sleeping_;
      wake_cv_.wait(lock,
                    [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
      --sleeping_;
      if (stop_) return;
      current = generation_.load(std::memory_order_acquire);
    }
    seen = current;
    run_share(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace moeserve::kernels
