// A debug count of reads of tensor data back to the host, read from JavaScript
// as backend().hostReads and hostReadBytes. Counted where results reach the
// host, whatever the device (an op's statistics, a model's outputs not kept on
// its device, a tensor's memory handed to JavaScript, a gradient norm), so a CPU
// run counts what the same run on a GPU copies device-to-host: whether a
// training loop brings back only scalars is checked without a GPU.
#pragma once

#include <atomic>
#include <cstdint>

namespace rlfarm {

// All threads of the process together.
inline std::atomic<uint64_t> host_reads{0};
inline std::atomic<uint64_t> host_read_bytes{0};

inline void count_host_read(uint64_t bytes) {
  host_reads.fetch_add(1, std::memory_order_relaxed);
  host_read_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

}  // namespace rlfarm
