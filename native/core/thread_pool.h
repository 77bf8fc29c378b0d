// A fixed pool of worker threads for the CPU backend, sized to the machine's
// cores (RLFARM_THREADS overrides). Work is split into contiguous chunks whose
// bounds depend only on the problem size and the pool size, never on timing.
#pragma once

#include <cstdint>
#include <functional>

namespace rlfarm {

int thread_count();

// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel, and
// returns when all are done. Chunks hold at least `min_chunk` items, so small
// problems run on the calling thread; their bounds depend only on n, min_chunk,
// chunks_per_thread and the pool size, so a chunk computes the same whichever
// thread runs it.
// There are at most chunks_per_thread chunks per pool thread: a few, so that
// a thread the host delays holds up only a small share (more where each chunk
// costs nothing extra, as in the GEMM). Chunks run with denormal floats
// flushed to zero (float_mode.h).
// Exceptions thrown by fn reach the caller. Calls from inside fn, or while
// another caller holds the pool, run inline.
void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn,
                  int chunks_per_thread = 4);

}  // namespace rlfarm
