#include "thread_pool.h"

#include "float_mode.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define RLF_PAUSE() _mm_pause()
#else
#define RLF_PAUSE() std::this_thread::yield()
#endif

namespace rlfarm {
namespace {

thread_local bool in_pool_task = false;

int configured_threads() {
  if (const char* env = std::getenv("RLFARM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n < 256 ? n : 256;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// How long an idle worker (or a waiting caller) spins before it sleeps. A
// training step makes hundreds of parallel calls back to back; waking a
// sleeping thread costs tens of microseconds each time, spinning a little costs
// nothing when the next call comes soon.
constexpr auto kSpin = std::chrono::microseconds(200);

class Pool {
 public:
  explicit Pool(int threads) : size_(threads) {
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int size() const { return size_; }

  // Runs chunks 0 .. chunks-1 of `task` on the caller and the workers. Chunks
  // are claimed from a counter, so a participant that is late (descheduled by
  // the host, say) leaves its share to the others; what each chunk computes
  // does not depend on who runs it.
  void run(int chunks, const std::function<void(int)>& task) {
    std::unique_lock<std::mutex> caller(caller_mutex_, std::try_to_lock);
    if (!caller.owns_lock() || in_pool_task) {
      // Pool busy with another caller (another libuv thread): run inline.
      for (int c = 0; c < chunks; ++c) task(c);
      return;
    }
    uint64_t generation;
    {
      // Workers read a generation's task and size under this lock, so none can
      // mix up one call's work with the next one's.
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      chunks_ = chunks;
      error_ = nullptr;
      pending_.store(chunks);
      generation = generation_.fetch_add(1) + 1;
      claims_.store(generation << 32);
    }
    wake_.notify_all();
    work_on(task, chunks, generation);
    // Wait for the others: spin first, then sleep.
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    while (pending_.load() != 0 && std::chrono::steady_clock::now() < deadline) RLF_PAUSE();
    if (pending_.load() != 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_.load() == 0; });
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Claims the next chunk of `generation`'s call; false when there is none
  // left, or when that call is over (a late worker must not touch the next one).
  bool claim(uint64_t generation, int chunks, int& chunk) {
    uint64_t current = claims_.load();
    for (;;) {
      if ((current >> 32) != (generation & 0xffffffffu)) return false;
      const int next = static_cast<int>(current & 0xffffffffu);
      if (next >= chunks) return false;
      if (claims_.compare_exchange_weak(current, current + 1)) {
        chunk = next;
        return true;
      }
    }
  }

  // Claims and runs chunks until none are left.
  void work_on(const std::function<void(int)>& task, int chunks, uint64_t generation) {
    int c;
    while (claim(generation, chunks, c)) {
      run_chunk(task, c);
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);  // pairs with the caller's wait
        done_.notify_one();
      }
    }
  }

  void run_chunk(const std::function<void(int)>& task, int c) {
    in_pool_task = true;
    try {
      task(c);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    in_pool_task = false;
  }

  void worker_loop() {
    const FlushDenormals flush;  // for the thread's life, as on every caller of parallel_for
    uint64_t seen = 0;
    for (;;) {
      // Spin for new work, then sleep until it comes.
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      while (generation_.load() == seen && std::chrono::steady_clock::now() < deadline) RLF_PAUSE();
      int chunks;
      const std::function<void(int)>* task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (stopping_) return;
        chunks = chunks_;
        task = task_;
      }
      work_on(*task, chunks, seen);
    }
  }

  const int size_;
  std::vector<std::thread> workers_;
  std::mutex caller_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};       // chunks of the current call not finished
  std::atomic<uint64_t> claims_{0};   // generation (low 32 bits) << 32 | next chunk to claim
  bool stopping_ = false;
  const std::function<void(int)>* task_ = nullptr;
  int chunks_ = 0;
  std::exception_ptr error_;
};

Pool& pool() {
  // Leaked on purpose: joining threads from a static destructor at process exit
  // can deadlock when the addon is unloaded.
  static Pool* instance = new Pool(configured_threads());
  return *instance;
}

}  // namespace

int thread_count() { return pool().size(); }

void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn, int chunks_per_thread) {
  if (n <= 0) return;
  // Every chunk runs with denormals flushed, whichever thread runs it.
  const FlushDenormals flush;
  if (min_chunk < 1) min_chunk = 1;
  Pool& p = pool();
  // A few chunks per thread, so that a thread the host delays holds up only a
  // small share; the split depends on n, min_chunk and the pool size only.
  int64_t chunks = (n + min_chunk - 1) / min_chunk;
  if (chunks_per_thread < 1) chunks_per_thread = 1;
  if (chunks > int64_t{chunks_per_thread} * p.size()) chunks = int64_t{chunks_per_thread} * p.size();
  if (chunks <= 1 || in_pool_task) {
    fn(0, n);
    return;
  }
  const int k = static_cast<int>(chunks);
  p.run(k, [&](int c) {
    const int64_t begin = n * c / k, end = n * (c + 1) / k;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace rlfarm
