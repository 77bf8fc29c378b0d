// The machine's peak single-precision FMA rate: every thread runs twelve
// independent chains of register-only vfmadd231ps, enough to keep two FMA
// units busy through their latency. Compiled and run by bench/gemm.ts:
//   cc -O2 -pthread bench/fma_peak.c -o fma_peak && ./fma_peak <threads>
// Prints one JSON line: {"threads":N,"avx512_gflops":X,"avx2_gflops":Y}
// (a width the CPU lacks is reported as null).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERATIONS 100000000L

#define FMA(width, i) "vfmadd231ps %%" width "14, %%" width "15, %%" width #i "\n"
#define FMA12(width)                                                                                       \
  FMA(width, 0) FMA(width, 1) FMA(width, 2) FMA(width, 3) FMA(width, 4) FMA(width, 5) FMA(width, 6)      \
  FMA(width, 7) FMA(width, 8) FMA(width, 9) FMA(width, 10) FMA(width, 11)

static void* zmm_chains(void* unused) {
  (void)unused;
  __asm__ volatile("vpxord %%zmm14, %%zmm14, %%zmm14\n vpxord %%zmm15, %%zmm15, %%zmm15\n"
                   "mov %0, %%rcx\n 1:\n" FMA12("zmm") "dec %%rcx\n jnz 1b\n"
                   :
                   : "r"(ITERATIONS)
                   : "rcx", "memory");
  return NULL;
}

static void* ymm_chains(void* unused) {
  (void)unused;
  __asm__ volatile("vxorps %%ymm14, %%ymm14, %%ymm14\n vxorps %%ymm15, %%ymm15, %%ymm15\n"
                   "mov %0, %%rcx\n 1:\n" FMA12("ymm") "dec %%rcx\n jnz 1b\n"
                   :
                   : "r"(ITERATIONS)
                   : "rcx", "memory");
  return NULL;
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// GFLOP/s of `threads` threads running `chains` at once; lanes per register given.
static double rate(void* (*chains)(void*), int threads, int lanes) {
  pthread_t* ids = malloc(sizeof(pthread_t) * threads);
  const double start = seconds();
  for (int i = 0; i < threads; ++i) pthread_create(&ids[i], NULL, chains, NULL);
  for (int i = 0; i < threads; ++i) pthread_join(ids[i], NULL);
  const double elapsed = seconds() - start;
  free(ids);
  return (double)threads * ITERATIONS * 12 * lanes * 2 / elapsed / 1e9;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1) {
    fprintf(stderr, "usage: fma_peak <threads>\n");
    return 2;
  }
  __builtin_cpu_init();
  const int has_avx512 = __builtin_cpu_supports("avx512f");
  const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  printf("{\"threads\":%d", threads);
  if (has_avx512) printf(",\"avx512_gflops\":%.1f", rate(zmm_chains, threads, 16));
  else printf(",\"avx512_gflops\":null");
  if (has_avx2) printf(",\"avx2_gflops\":%.1f", rate(ymm_chains, threads, 8));
  else printf(",\"avx2_gflops\":null");
  printf("}\n");
  return 0;
}
