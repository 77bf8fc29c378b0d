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
