#include "nccl.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "../core/cuda_runtime.h"
#include "../core/error.h"
#include "../core/shared_library.h"

namespace rlfarm::distributed {

// Values of nccl.h's enums used here.
namespace {
constexpr int kSuccess = kNcclSuccess, kInProgress = kNcclInProgress;   // ncclResult_t
constexpr int kInt32 = 2, kFloat32 = 7, kBfloat16 = 9;                 // ncclDataType_t
constexpr int kSum = 0, kMax = 2, kMin = 3, kAvg = 4;                  // ncclRedOp_t (kAvg since NCCL 2.10)
}  // namespace

int nccl_dtype(DType dtype, const char* op) {
  switch (dtype) {
    case DType::f32: return kFloat32;
    case DType::bf16: return kBfloat16;
    case DType::i32: return kInt32;
    default: fail("distributed.", op, ": NCCL reductions take f32, bf16 or i32 tensors; got ", dtype_name(dtype));
  }
}

int nccl_reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return kSum;
    case ReduceOp::avg: return kAvg;
    case ReduceOp::max: return kMax;
    case ReduceOp::min: return kMin;
  }
  fail("distributed: no NCCL reduction for op ", static_cast<int>(op));
}

NcclConfig nccl_config(bool blocking) {
  return NcclConfig{sizeof(NcclConfig), kNcclConfigMagic, kNcclConfigVersion, blocking ? 1 : 0};
}

NcclSettled wait_nccl_settled(const std::function<int()>& poll, Milliseconds timeout, std::chrono::microseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const int state = poll();
    if (state != kInProgress) return NcclSettled{state, false};
    if (std::chrono::steady_clock::now() >= deadline) return NcclSettled{state, true};
    std::this_thread::sleep_for(interval);
  }
}

namespace {

struct UniqueId {
  char internal[kNcclUniqueIdBytes];
};
using Comm = void*;
using Stream = void*;

// nccl.h's functions that rlfarm calls (enums passed as int, as C passes them).
struct Api {
  int (*get_unique_id)(UniqueId*);
  int (*comm_init_rank)(Comm*, int, UniqueId, int);
  int (*comm_init_rank_config)(Comm*, int, UniqueId, int, NcclConfig*) = nullptr;  // NCCL 2.14+; null before
  int (*all_reduce)(const void*, void*, size_t, int, int, Comm, Stream);
  int (*broadcast)(const void*, void*, size_t, int, int, Comm, Stream);
  int (*all_gather)(const void*, void*, size_t, int, Comm, Stream);
  int (*reduce_scatter)(const void*, void*, size_t, int, int, Comm, Stream);
  int (*comm_get_async_error)(Comm, int*);
  int (*comm_abort)(Comm);
  int (*comm_destroy)(Comm);
  const char* (*get_error_string)(int);
  std::string library;     // the file loaded, or empty
  std::string unavailable;  // why none loaded, with what to install
};

Api load_api() {
  Api a;
  // RLFARM_NCCL names the one file to load; otherwise the sonames NCCL installs.
  const char* env = std::getenv("RLFARM_NCCL");
  const std::vector<const char*> names =
      env != nullptr && *env != '\0' ? std::vector<const char*>{env} : std::vector<const char*>{"libnccl.so.2", "libnccl.so"};
  const SharedLibrary found = open_first(names);
  void* lib = found.handle;
  if (lib == nullptr) {
    a.unavailable = std::string(names.front()) + " not found (tried " + found.tried +
                    (found.error.empty() ? "" : "; " + found.error) +
                    "): install NCCL (apt-get install libnccl2, or pip install nvidia-nccl-cu12 and set RLFARM_NCCL to its "
                    "nvidia/nccl/lib/libnccl.so.2), or move the tensor to the cpu with .to('cpu')";
    return a;
  }
  a.library = found.name;
  const bool ok = bind(lib, "ncclGetUniqueId", a.get_unique_id) && bind(lib, "ncclCommInitRank", a.comm_init_rank) &&
                  bind(lib, "ncclAllReduce", a.all_reduce) && bind(lib, "ncclBroadcast", a.broadcast) &&
                  bind(lib, "ncclAllGather", a.all_gather) && bind(lib, "ncclReduceScatter", a.reduce_scatter) &&
                  bind(lib, "ncclCommGetAsyncError", a.comm_get_async_error) &&
                  bind(lib, "ncclCommAbort", a.comm_abort) && bind(lib, "ncclCommDestroy", a.comm_destroy) &&
                  bind(lib, "ncclGetErrorString", a.get_error_string);
  // Optional: the non-blocking init that the group waits on with its timeout.
  if (ok) (void)bind(lib, "ncclCommInitRankConfig", a.comm_init_rank_config);
  if (!ok) {
    a.unavailable = a.library + " lacks a function rlfarm calls (ncclGetUniqueId, ncclCommInitRank, ncclAllReduce, ncclBroadcast, "
                    "ncclAllGather, ncclReduceScatter, ncclCommGetAsyncError, ncclCommAbort, ncclCommDestroy, ncclGetErrorString): "
                    "is it NCCL 2.10 or later? Install NCCL, or move the tensor to the cpu with .to('cpu')";
    a.library.clear();
  }
  return a;
}

const Api& api() {
  static const Api loaded = load_api();  // once, by whichever thread asks first
  return loaded;
}

class NcclGroup : public ProcessGroup {
 public:
  NcclGroup(ProcessGroup& host, int device) : host_(host), device_(device), api_(api()) {
    RLF_CHECK(api_.unavailable.empty(), "CUDA tensors need NCCL: ", api_.unavailable);
    const int devices = cuda::device_count();
    RLF_CHECK(device >= 0 && device < devices, "rank ", rank(), "'s NCCL group runs on cuda:", device,
              " (its LOCAL_RANK) but this process sees ", devices, " CUDA device(s)",
              devices == 0 ? " (" + cuda::unavailable_reason() + ")" : std::string());
    const std::vector<char> id = share_from_rank_zero(
        host, "rlfarm/nccl/unique-id",
        [this] {
          UniqueId made;
          check(api_.get_unique_id(&made), "ncclGetUniqueId");
          return std::vector<char>(made.internal, made.internal + kNcclUniqueIdBytes);
        },
        kNcclUniqueIdBytes, host.default_timeout());
    UniqueId unique;
    std::memcpy(unique.internal, id.data(), kNcclUniqueIdBytes);
    // Every rank passed share_from_rank_zero's barrier just now, so all are here to join.
    cuda::set_device(device_);
    join(unique, host.default_timeout());
    try {
      stream_ = cuda::stream_create(device_);
    } catch (...) {
      api_.comm_destroy(comm_);
      throw;
    }
  }

  ~NcclGroup() override {
    if (comm_ != nullptr) api_.comm_destroy(comm_);
    cuda::stream_destroy(device_, stream_);
  }

  int rank() const override { return host_.rank(); }
  int world_size() const override { return host_.world_size(); }
  const char* backend() const override { return "nccl"; }
  KeyValueStore& store() override { return host_.store(); }
  Milliseconds default_timeout() const override { return host_.default_timeout(); }

  void all_reduce(const Tensor& t, ReduceOp op, Milliseconds timeout) override {
    check_tensor(t, "allReduce");
    const int dtype = nccl_dtype(t.dtype, "allReduce");
    run("allReduce", t, timeout, [&] {
      return api_.all_reduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), dtype, nccl_reduce_op(op), comm_, stream_);
    });
  }

  void broadcast(const Tensor& t, int root, Milliseconds timeout) override {
    check_tensor(t, "broadcast");
    RLF_CHECK(root >= 0 && root < world_size(), "distributed.broadcast: root must be a rank in 0..", world_size() - 1,
              "; got ", root);
    run("broadcast", t, timeout, [&] { return api_.broadcast(t.raw(), t.raw(), t.nbytes(), kNcclUint8, root, comm_, stream_); });
  }

  void all_gather(const Tensor& in, const Tensor& out, Milliseconds timeout) override {
    check_tensor(in, "allGather");
    check_tensor(out, "allGather");
    check_all_gather(in, out, world_size());
    run("allGather", in, timeout, [&] { return api_.all_gather(in.raw(), out.raw(), in.nbytes(), kNcclUint8, comm_, stream_); });
  }

  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op, Milliseconds timeout) override {
    check_tensor(in, "reduceScatter");
    check_tensor(out, "reduceScatter");
    check_reduce_scatter(in, out, world_size());
    const int dtype = nccl_dtype(in.dtype, "reduceScatter");
    run("reduceScatter", in, timeout, [&] {
      return api_.reduce_scatter(in.raw(), out.raw(), static_cast<size_t>(out.numel()), dtype, nccl_reduce_op(op), comm_, stream_);
    });
  }

  // A barrier orders processes, not devices: the host group's does it.
  void barrier(Milliseconds timeout) override { host_.barrier(timeout); }

  void reduce_scatter_blocks(float*, int64_t, int64_t, Milliseconds) override { host_buffers_only("reduceScatter"); }
  void all_gather_blocks(float*, int64_t, int64_t, Milliseconds) override { host_buffers_only("allGather"); }

 private:
  [[noreturn]] static void host_buffers_only(const char* op) {
    fail("distributed.", op, ": ZeRO-1's ring collectives move host buffers (cpu models); the NCCL group serves CUDA tensors");
  }

  // ncclCommInitRank with the group's timeout: the non-blocking init
  // (ncclCommInitRankConfig, blocking = 0) polled until it settles, so that a
  // rank that died after the rendezvous makes the others fail, not hang. NCCL
  // before 2.14 has only the blocking call, which waits for every rank however long.
  void join(const UniqueId& unique, Milliseconds timeout) {
    if (api_.comm_init_rank_config == nullptr) {
      check(api_.comm_init_rank(&comm_, world_size(), unique, rank()), "ncclCommInitRank");
      return;
    }
    NcclConfig config = nccl_config(false);
    const int started = api_.comm_init_rank_config(&comm_, world_size(), unique, rank(), &config);
    if (started != kSuccess && started != kInProgress) fail_join(std::string(api_.get_error_string(started)));
    if (started == kSuccess) return;
    RLF_CHECK(comm_ != nullptr, "ncclCommInitRankConfig on ", who(), " returned ncclInProgress without a communicator");
    const NcclSettled settled = wait_nccl_settled(
        [this] {
          int state = kInProgress;
          const int asked = api_.comm_get_async_error(comm_, &state);
          return asked != kSuccess ? asked : state;
        },
        timeout);
    if (settled.timed_out) {
      fail_join("not every rank joined within " + seconds_text(timeout) +
                " s (the process group's timeout: another rank is stuck, slower than the timeout, or has exited)");
    }
    if (settled.result != kSuccess) fail_join(std::string(api_.get_error_string(settled.result)));
  }

  [[noreturn]] void fail_join(const std::string& why) {
    if (comm_ != nullptr) api_.comm_abort(comm_);
    comm_ = nullptr;
    fail("distributed: NCCL init (ncclCommInitRankConfig) failed on ", who(), ": ", why, "; the communicator was aborted");
  }

  std::string who() const {
    return "rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) + " (NCCL, cuda:" +
           std::to_string(device_) + ")";
  }

  void check(int result, const char* call) const {
    if (result != kSuccess && result != kInProgress) fail(call, " failed on ", who(), ": ", api_.get_error_string(result));
  }

  void check_tensor(const Tensor& t, const char* op) const {
    check_usable(t, op);
    RLF_CHECK(t.device() == Device::gpu(device_), "distributed.", op, ": ", who(), " takes tensors on cuda:", device_,
              " (its LOCAL_RANK); got one on ", t.device().name());
  }

  // Aborts the communicator (its pending work cannot finish) and fails naming the collective.
  [[noreturn]] void abort_with(const char* op, const Tensor& t, const std::string& why) {
    broken_ = why;
    api_.comm_abort(comm_);
    comm_ = nullptr;
    fail("distributed.", op, " of ", t.describe(), " failed on ", who(), ": ", why, "; the NCCL communicator was aborted");
  }

  template <typename Enqueue>
  void run(const char* op, const Tensor& t, Milliseconds timeout, Enqueue&& enqueue) {
    RLF_CHECK(comm_ != nullptr, "distributed.", op, ": the NCCL group is broken by an earlier error (", broken_,
              "); the run must stop");
    if (t.numel() == 0) return;
    // The tensor may still be being written by kernels on other streams.
    cuda::synchronize(device_);
    const int queued = enqueue();
    if (queued != kSuccess && queued != kInProgress) abort_with(op, t, api_.get_error_string(queued));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // The communicator is non-blocking: while its state is ncclInProgress the
    // collective may not be on the stream yet (an idle stream proves nothing),
    // so done is: state ncclSuccess, then the stream drained.
    while (true) {
      int async = kSuccess;
      const int asked = api_.comm_get_async_error(comm_, &async);
      if (asked != kSuccess) async = asked;
      if (async != kSuccess && async != kInProgress) abort_with(op, t, api_.get_error_string(async));
      if (async == kSuccess && cuda::stream_done(device_, stream_)) break;
      if (std::chrono::steady_clock::now() > deadline) {
        abort_with(op, t, "timed out after " + seconds_text(timeout) +
                              " s (another rank did not make the same call in time: it is stuck, slower than the timeout, or has exited)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  ProcessGroup& host_;
  int device_;
  const Api& api_;
  Comm comm_ = nullptr;
  Stream stream_ = nullptr;
  std::string broken_;
};

}  // namespace

std::string nccl_library() { return api().library; }
std::string nccl_unavailable_reason() { return api().unavailable; }

std::vector<char> share_from_rank_zero(ProcessGroup& host, const std::string& key, const std::function<std::vector<char>()>& make,
                                       size_t bytes, Milliseconds timeout) {
  KeyValueStore& store = host.store();
  if (host.rank() == 0) {
    const std::vector<char> mine = make();
    RLF_CHECK(mine.size() == bytes, "distributed: rank 0 made ", mine.size(), " bytes for ", key, "; expected ", bytes);
    store.set(key, mine);
  }
  std::vector<char> value = store.get(key, timeout);
  RLF_CHECK(value.size() == bytes, "distributed: ", key, " in the rendezvous store (", store.where(), ") holds ", value.size(),
            " bytes; expected ", bytes);
  // Erased once every rank has read it, and before any goes on, so that a
  // later exchange under the key (or a later run on the same file store)
  // cannot read this one.
  host.barrier(timeout);
  if (host.rank() == 0) store.erase(key);
  host.barrier(timeout);
  return value;
}

std::unique_ptr<ProcessGroup> create_nccl_group(ProcessGroup& host, int device) {
  return std::make_unique<NcclGroup>(host, device);
}

}  // namespace rlfarm::distributed
