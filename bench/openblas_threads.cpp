// How OpenBLAS's own threads and rlfarm's pool get along: the measurement
// behind running OpenBLAS single-threaded under the pool (native/cpu/gemm.h).
// Per shape, median (best) GFLOP/s over 21 repeats of
//   builtin            rlfarm's kernel, C split over the pool     } interleaved
//   openblas on pool   the openblas backend: one OpenBLAS thread  }
//                      per block of the same split
//   openblas threads   cblas_sgemm with OpenBLAS's own pool-size threads, alone
//   builtin after      the builtin product right after each such call
// with a pause between phases so that OpenBLAS's workers go back to sleep.
// Built and run by bench/openblas_threads.sh (x86-64, g++).
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/gemm.h"

namespace {

using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using SetThreads = void (*)(int);

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Shape {
  int M, N, K;
  bool trans_a, trans_b;
};

}  // namespace

int main() {
  void* openblas = dlopen("libopenblas.so.0", RTLD_NOW);
  if (!openblas) {
    std::printf("libopenblas.so.0 not found: %s\n", dlerror());
    return 1;
  }
  const auto cblas_sgemm = reinterpret_cast<CblasSgemm>(dlsym(openblas, "cblas_sgemm"));
  const auto set_threads = reinterpret_cast<SetThreads>(dlsym(openblas, "openblas_set_num_threads"));
  const int threads = rlfarm::thread_count();
  const Shape shapes[] = {{2048, 768, 256, false, true},  {2048, 256, 768, false, false}, {768, 256, 2048, true, false},
                          {2048, 1024, 256, false, true}, {2048, 256, 1024, false, false}, {1024, 256, 2048, true, false}};
  std::printf("pool of %d threads; median (best) GFLOP/s\n", threads);
  std::printf("%-22s %-16s %-18s %-18s %-16s\n", "shape", "builtin", "openblas on pool", "openblas threads", "builtin after");
  for (const Shape& s : shapes) {
    std::vector<float> A(static_cast<size_t>(s.M) * s.K, 0.5f), B(static_cast<size_t>(s.K) * s.N, 0.25f),
        C(static_cast<size_t>(s.M) * s.N);
    const int lda = s.trans_a ? s.M : s.K, ldb = s.trans_b ? s.K : s.N;
    const auto rlfarm_gemm = [&] {
      rlfarm::cpu::sgemm(s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), s.N);
    };
    const auto openblas_threaded = [&] {
      cblas_sgemm(101, s.trans_a ? 112 : 111, s.trans_b ? 112 : 111, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb,
                  0.0f, C.data(), s.N);
    };
    std::vector<double> times[4];
    const auto timed = [&](int slot, auto&& fn) {
      const double start = seconds();
      fn();
      times[slot].push_back(seconds() - start);
    };
    const auto backend = [](const char* name) { rlfarm::cpu::set_gemm_backend(name); };
    constexpr int kRepeats = 21;
    for (int repeat = 0; repeat < kRepeats; ++repeat) {
      backend("builtin");
      timed(0, rlfarm_gemm);
      backend("openblas");
      timed(1, rlfarm_gemm);
    }
    set_threads(threads);
    for (int repeat = 0; repeat < kRepeats; ++repeat) timed(2, openblas_threaded);
    backend("builtin");
    for (int repeat = 0; repeat < kRepeats; ++repeat) {
      openblas_threaded();
      timed(3, rlfarm_gemm);
    }
    set_threads(1);  // what the openblas backend expects
    std::this_thread::sleep_for(std::chrono::seconds(1));  // OpenBLAS's workers stop spinning
    const double gflop = 2.0 * s.M * s.N * s.K / 1e9;
    char name[64], cells[4][32];
    std::snprintf(name, sizeof name, "%dx%dx%d %c%c", s.M, s.N, s.K, s.trans_a ? 'T' : 'N', s.trans_b ? 'T' : 'N');
    for (int i = 0; i < 4; ++i) {
      std::sort(times[i].begin(), times[i].end());
      std::snprintf(cells[i], sizeof cells[i], "%.0f (%.0f)", gflop / times[i][times[i].size() / 2], gflop / times[i][0]);
    }
    std::printf("%-22s %-16s %-18s %-18s %-16s\n", name, cells[0], cells[1], cells[2], cells[3]);
  }
  return 0;
}
