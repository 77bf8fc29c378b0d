// The NCCL process group (CUDA tensors), beside the Gloo group (host tensors):
// one ProcessGroup interface, picked by the tensor's device. NCCL is loaded at
// run time with dlopen, as CUDA installs and PyTorch's wheels ship it
// (libnccl.so.2); RLFARM_NCCL names the file to load instead. rlfarm declares
// the few NCCL types and functions it calls itself (nccl.h is not needed to
// build). Rank 0 makes the ncclUniqueId and hands it to the others through
// the Gloo group's rendezvous store; each rank's communicator runs on one
// device (its LOCAL_RANK's), its collectives on a stream of their own, which
// the caller polls until done, an NCCL error, or the timeout (then the
// communicator is aborted and the error names the collective and the rank).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "process_group.h"

namespace rlfarm::distributed {

// nccl.h's values for what rlfarm reduces: ncclDataType_t of a dtype (f32,
// bf16, i32; others throw, naming `op`) and ncclRedOp_t of an op.
int nccl_dtype(DType dtype, const char* op);
int nccl_reduce_op(ReduceOp op);
constexpr int kNcclUint8 = 1;  // ncclUint8: broadcast and all-gather move bytes whatever the dtype
constexpr size_t kNcclUniqueIdBytes = 128;

// nccl.h's ncclResult_t values the group tells apart.
constexpr int kNcclSuccess = 0, kNcclInProgress = 7;

// nccl.h's ncclConfig_t as NCCL 2.14 defines it (ncclConfig_v21400), the
// first release with ncclCommInitRankConfig. The struct grows in later
// releases; a library reads `size` bytes of it and, by `version`, takes only
// the fields that version had (the rest, the padding after `blocking`
// included, get its defaults), so this layout with version 2.14.0 means the
// same to every NCCL since.
struct NcclConfig {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
};
constexpr unsigned int kNcclConfigMagic = 0xcafebeef;  // NCCL_API_MAGIC
constexpr unsigned int kNcclConfigVersion = 21400;     // NCCL_VERSION(2, 14, 0)
// NCCL_CONFIG_INITIALIZER of that layout, with blocking set.
NcclConfig nccl_config(bool blocking);

// Polls an NCCL state (ncclCommGetAsyncError's) until it is no longer
// ncclInProgress or `timeout` has passed, sleeping `interval` between polls:
// the last state, and whether the time ran out first. A non-blocking
// communicator's init and calls return ncclInProgress and are waited on here.
struct NcclSettled {
  int result;
  bool timed_out;
};
NcclSettled wait_nccl_settled(const std::function<int()>& poll, Milliseconds timeout,
                              std::chrono::microseconds interval = std::chrono::microseconds(200));

// The NCCL library loaded ("libnccl.so.2"), or empty with nccl_unavailable_reason() saying why not.
std::string nccl_library();
std::string nccl_unavailable_reason();

// Rank 0's make() on every rank, through `store` under `key` (exactly `bytes`
// bytes, or an error naming the key); the key is erased before any rank returns.
std::vector<char> share_from_rank_zero(ProcessGroup& host, const std::string& key, const std::function<std::vector<char>()>& make,
                                       size_t bytes, Milliseconds timeout);

// The NCCL group of host's ranks on cuda:device; host serves its store and barrier.
std::unique_ptr<ProcessGroup> create_nccl_group(ProcessGroup& host, int device);

}  // namespace rlfarm::distributed
