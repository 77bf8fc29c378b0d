// The Gloo process group (host tensors), built when CMake finds Gloo
// (RLFARM_WITH_GLOO); otherwise create_process_group says what to install.
// Collectives are Gloo's own (ring allreduce, broadcast, allgather, barrier)
// over its TCP transport; rendezvous goes through the KeyValueStore here.
#include <sys/socket.h>
#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/error.h"
#include "process_group.h"

#if RLFARM_WITH_GLOO
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/config.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>
#endif

namespace rlfarm::distributed {

ReduceOp parse_reduce_op(const std::string& name) {
  if (name == "sum") return ReduceOp::sum;
  if (name == "avg") return ReduceOp::avg;
  if (name == "max") return ReduceOp::max;
  if (name == "min") return ReduceOp::min;
  fail("distributed: op must be 'sum', 'avg', 'max' or 'min'; got '", name, "'");
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

void check_all_gather(const Tensor& in, const Tensor& out, int world_size) {
  RLF_CHECK(in.dtype == out.dtype, "distributed.allGather: the output is ", dtype_name(out.dtype), " but the input is ",
            dtype_name(in.dtype));
  RLF_CHECK(out.numel() == in.numel() * world_size, "distributed.allGather: the output must hold world size (", world_size,
            ") x ", in.numel(), " elements; got ", out.numel());
}

void check_reduce_scatter(const Tensor& in, const Tensor& out, int world_size) {
  RLF_CHECK(in.dtype == out.dtype, "distributed.reduceScatter: the output is ", dtype_name(out.dtype), " but the input is ",
            dtype_name(in.dtype));
  RLF_CHECK(in.numel() == out.numel() * world_size, "distributed.reduceScatter: the input must hold world size (", world_size,
            ") x ", out.numel(), " elements; got ", in.numel());
}

#if RLFARM_WITH_GLOO

bool gloo_compiled() { return true; }
std::string gloo_version() {
  return std::to_string(GLOO_VERSION_MAJOR) + "." + std::to_string(GLOO_VERSION_MINOR) + "." +
         std::to_string(GLOO_VERSION_PATCH);
}

namespace {

// Gloo's FileStore, with timeouts that name the missing keys.
class FileKeyValueStore : public KeyValueStore, private gloo::rendezvous::FileStore {
 public:
  explicit FileKeyValueStore(const std::string& dir) : FileStore(dir), dir_(dir) {}
  void set(const std::string& key, const std::vector<char>& value) override { FileStore::set(key, value); }
  std::vector<char> get(const std::string& key, Milliseconds timeout) override {
    wait({key}, timeout);
    return FileStore::get(key);
  }
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override {
    try {
      FileStore::wait(keys, timeout);
    } catch (const gloo::Exception&) {
      std::vector<std::string> absent;
      for (const auto& key : keys)
        if (!FileStore::check({key})) absent.push_back(key);
      std::string list;
      for (const auto& k : absent) list += (list.empty() ? "" : ", ") + k;
      throw StoreTimeout("rendezvous store " + where() + ": timed out after " + seconds_text(timeout) +
                             " s waiting for key(s) " + list,
                         absent);
    }
  }
  void erase(const std::string& key) override { ::unlink(objectPath(key).c_str()); }
  std::string where() const override { return "file://" + dir_; }

 private:
  std::string dir_;
};

// Gloo's rendezvous reads and writes through this view of our store.
class GlooStoreView : public gloo::rendezvous::Store {
 public:
  GlooStoreView(KeyValueStore& store, Milliseconds timeout) : store_(store), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override { store_.set(prefix + key, data); }
  std::vector<char> get(const std::string& key) override { return store_.get(prefix + key, timeout_); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> prefixed;
    for (const auto& k : keys) prefixed.push_back(prefix + k);
    store_.wait(prefixed, timeout);
  }

 private:
  static constexpr const char* prefix = "gloo/";
  KeyValueStore& store_;
  Milliseconds timeout_;
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// The local address this machine uses to reach `host` (no packet is sent:
// connect() on a UDP socket only picks the route), so that peers on other
// nodes can reach this rank's Gloo pairs.
std::string local_address_toward(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0) fail("rendezvous: cannot resolve MASTER_ADDR '", host, "'");
  std::string out;
  for (addrinfo* a = found; a && out.empty(); a = a->ai_next) {
    const int fd = ::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char text[NI_MAXHOST];
      if (::getnameinfo(reinterpret_cast<sockaddr*>(&local), len, text, sizeof text, nullptr, 0, NI_NUMERICHOST) == 0)
        out = text;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  RLF_CHECK(!out.empty(), "rendezvous: no local address routes to MASTER_ADDR '", host,
            "'; set GLOO_SOCKET_IFNAME to the interface the ranks share");
  return out;
}

std::string this_host() {
  char name[256] = {0};
  ::gethostname(name, sizeof name - 1);
  return name;
}

void bf16_reduce(void* c, const void* a, const void* b, size_t n, ReduceOp op) {
  auto* out = static_cast<uint16_t*>(c);
  const auto* x = static_cast<const uint16_t*>(a);
  const auto* y = static_cast<const uint16_t*>(b);
  for (size_t i = 0; i < n; ++i) {
    const float u = bf16_to_float(x[i]), v = bf16_to_float(y[i]);
    const float r = op == ReduceOp::max ? (u > v ? u : v) : op == ReduceOp::min ? (u < v ? u : v) : u + v;
    out[i] = float_to_bf16(r);
  }
}

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

template <typename T>
ReduceFn typed_reduce(ReduceOp base) {
  return base == ReduceOp::sum ? static_cast<ReduceFn>(&gloo::sum<T>)
         : base == ReduceOp::max ? static_cast<ReduceFn>(&gloo::max<T>)
                                 : static_cast<ReduceFn>(&gloo::min<T>);
}

gloo::AllreduceOptions::Func reduce_function(DType dtype, ReduceOp op) {
  const ReduceOp base = op == ReduceOp::avg ? ReduceOp::sum : op;
  switch (dtype) {
    case DType::f32:
      return typed_reduce<float>(base);
    case DType::i32:
      return typed_reduce<int32_t>(base);
    case DType::bf16:
      return [base](void* c, const void* a, const void* b, size_t n) { bf16_reduce(c, a, b, n, base); };
    default:
      fail("distributed: reductions take f32, bf16 or i32 tensors; got ", dtype_name(dtype));
  }
}

void divide(const Tensor& t, int by) {
  const int64_t n = t.numel();
  if (t.dtype == DType::f32) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<float>(by);
  } else if (t.dtype == DType::i32) {
    int32_t* p = t.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) p[i] /= by;
  } else {
    uint16_t* p = t.data<uint16_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = float_to_bf16(bf16_to_float(p[i]) / static_cast<float>(by));
  }
}

class GlooGroup : public ProcessGroup {
 public:
  explicit GlooGroup(const GroupOptions& o) : options_(o) {
    join();
    connect();
  }

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  const char* backend() const override { return "gloo"; }
  KeyValueStore& store() override { return *store_; }
  Milliseconds default_timeout() const override { return options_.timeout; }

  void all_reduce(const Tensor& t, ReduceOp op, Milliseconds timeout) override {
    check_host(t, "allReduce");
    if (t.numel() == 0) return;
    run("allReduce", t, [&] {
      gloo::AllreduceOptions o(context_);
      set_output(o, t);
      o.setReduceFunction(reduce_function(t.dtype, op));
      o.setTag(next_tag());
      o.setTimeout(timeout);
      gloo::allreduce(o);
    });
    if (op == ReduceOp::avg) divide(t, options_.world_size);
  }

  void broadcast(const Tensor& t, int root, Milliseconds timeout) override {
    check_host(t, "broadcast");
    RLF_CHECK(root >= 0 && root < options_.world_size, "distributed.broadcast: root must be a rank in 0..",
              options_.world_size - 1, "; got ", root);
    if (t.numel() == 0) return;
    run("broadcast", t, [&] {
      gloo::BroadcastOptions o(context_);
      o.setOutput(static_cast<char*>(t.raw()), t.nbytes());
      o.setRoot(root);
      o.setTag(next_tag());
      o.setTimeout(timeout);
      gloo::broadcast(o);
    });
  }

  void all_gather(const Tensor& in, const Tensor& out, Milliseconds timeout) override {
    check_host(in, "allGather");
    check_host(out, "allGather");
    check_all_gather(in, out, options_.world_size);
    if (in.numel() == 0) return;
    run("allGather", in, [&] {
      gloo::AllgatherOptions o(context_);
      o.setInput(static_cast<char*>(in.raw()), in.nbytes());
      o.setOutput(static_cast<char*>(out.raw()), out.nbytes());
      o.setTag(next_tag());
      o.setTimeout(timeout);
      gloo::allgather(o);
    });
  }

  // Gloo 0.5 has reduce-scatter only as an old algorithm class bound to one
  // element type, without tags or timeouts. f32 sums go around the ring
  // (reduce_scatter_blocks); other types and ops reduce the whole input with
  // allreduce (twice reduce-scatter's traffic) and keep this rank's block.
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op, Milliseconds timeout) override {
    check_host(in, "reduceScatter");
    check_host(out, "reduceScatter");
    check_reduce_scatter(in, out, options_.world_size);
    const Tensor scratch = clone(in);
    if (in.dtype == DType::f32 && op == ReduceOp::sum) {
      reduce_scatter_blocks(scratch.data<float>(), scratch.numel(), out.numel(), timeout);
    } else {
      all_reduce(scratch, op, timeout);
    }
    std::memcpy(out.raw(), static_cast<const char*>(scratch.raw()) + out.nbytes() * options_.rank, out.nbytes());
  }

  void reduce_scatter_blocks(float* data, int64_t n, int64_t block, Milliseconds timeout) override {
    const int w = options_.world_size, r = options_.rank;
    check_blocks("reduceScatter", n, block);
    if (w == 1 || n == 0) return;
    std::vector<float> incoming(static_cast<size_t>(std::min(block, kRingPiece)));
    run("reduceScatter", Tensor(), [&] {
      auto send = context_->createUnboundBuffer(data, sizeof(float) * static_cast<size_t>(n));
      auto recv = context_->createUnboundBuffer(incoming.data(), sizeof(float) * incoming.size());
      // Step k: this rank passes its partial sum of block r - k - 1 to the
      // right and adds the left's partial of block r - k - 2 into its own;
      // after w - 1 steps block r has every rank's term.
      for (int64_t piece = 0; piece < block; piece += kRingPiece) {
        for (int k = 0; k + 1 < w; ++k) {
          const auto [send_at, send_len] = piece_of((r - k - 1 + w) % w, piece, n, block);
          const auto [recv_at, recv_len] = piece_of((r - k - 2 + 2 * w) % w, piece, n, block);
          const uint64_t slot = gloo::Slot::build(kRingSlotPrefix, next_tag());
          if (recv_len > 0) recv->recv((r - 1 + w) % w, slot, 0, sizeof(float) * recv_len);
          if (send_len > 0) send->send((r + 1) % w, slot, sizeof(float) * send_at, sizeof(float) * send_len);
          if (recv_len > 0) {
            wait(*recv, true, timeout);
            float* into = data + recv_at;
            for (int64_t i = 0; i < recv_len; ++i) into[i] += incoming[static_cast<size_t>(i)];
          }
          if (send_len > 0) wait(*send, false, timeout);
        }
      }
    });
  }

  void all_gather_blocks(float* data, int64_t n, int64_t block, Milliseconds timeout) override {
    const int w = options_.world_size, r = options_.rank;
    check_blocks("allGather", n, block);
    if (w == 1 || n == 0) return;
    run("allGather", Tensor(), [&] {
      auto buffer = context_->createUnboundBuffer(data, sizeof(float) * static_cast<size_t>(n));
      // Step k: block r - k goes to the right, block r - k - 1 comes from the left, straight into place.
      for (int64_t piece = 0; piece < block; piece += kRingPiece) {
        for (int k = 0; k + 1 < w; ++k) {
          const auto [send_at, send_len] = piece_of((r - k + w) % w, piece, n, block);
          const auto [recv_at, recv_len] = piece_of((r - k - 1 + w) % w, piece, n, block);
          const uint64_t slot = gloo::Slot::build(kRingSlotPrefix, next_tag());
          if (recv_len > 0) buffer->recv((r - 1 + w) % w, slot, sizeof(float) * recv_at, sizeof(float) * recv_len);
          if (send_len > 0) buffer->send((r + 1) % w, slot, sizeof(float) * send_at, sizeof(float) * send_len);
          if (recv_len > 0) wait(*buffer, true, timeout);
          if (send_len > 0) wait(*buffer, false, timeout);
        }
      }
    });
  }

  void barrier(Milliseconds timeout) override {
    run("barrier", Tensor(), [&] {
      gloo::BarrierOptions o(context_);
      o.setTag(next_tag());
      o.setTimeout(timeout);
      gloo::barrier(o);
    });
  }

 private:
  std::string who() const {
    return "rank " + std::to_string(options_.rank) + " of " + std::to_string(options_.world_size);
  }

  void check_host(const Tensor& t, const char* op) const {
    check_usable(t, op);
    RLF_CHECK(t.device().is_cpu(), "distributed.", op, ": the Gloo group takes host tensors; got one on ", t.device().name(),
              " (CUDA tensors go to the NCCL group, which takes every tensor of a call on the same device)");
  }

  uint32_t next_tag() { return tag_++; }

  // Ring collectives move blocks in pieces of at most this many floats (4 MiB),
  // so the receive buffer stays small however large the model.
  static constexpr int64_t kRingPiece = int64_t{1} << 20;
  // Gloo's own collectives use small slot prefixes; the tag alone already keeps calls apart.
  static constexpr uint8_t kRingSlotPrefix = 0x52;

  void check_blocks(const char* op, int64_t n, int64_t block) const {
    RLF_CHECK(n >= 0 && block >= 0 && block * options_.world_size >= n, "distributed.", op, ": ", options_.world_size,
              " blocks of ", block, " do not cover ", n, " elements");
  }

  // [offset, length) of piece `piece` of block `b`, clipped to the block and to n.
  static std::pair<int64_t, int64_t> piece_of(int b, int64_t piece, int64_t n, int64_t block) {
    const int64_t begin = std::min(n, b * block + piece);
    const int64_t end = std::min({n, b * block + block, begin + kRingPiece});
    return {begin, std::max<int64_t>(0, end - begin)};
  }

  static void wait(gloo::transport::UnboundBuffer& buffer, bool receive, Milliseconds timeout) {
    // Gloo throws IoException when a peer's pair fails and returns false only when aborted.
    const bool done = receive ? buffer.waitRecv(timeout) : buffer.waitSend(timeout);
    if (!done) throw gloo::IoException("the transfer was aborted");
  }

  template <typename F>
  void run(const char* op, const Tensor& t, F&& body) {
    RLF_CHECK(context_, "distributed.", op, ": the process group is broken by an earlier error (", broken_,
              "); the run must stop");
    try {
      body();
    } catch (const gloo::Exception& e) {
      std::string what = e.what();
      const bool timed_out = what.find("Timed out") != std::string::npos || what.find("timed out") != std::string::npos;
      broken_ = what;
      context_.reset();  // Gloo's pairs are unusable after an error
      fail("distributed.", op, t.defined() ? " of " + t.describe() : std::string(), " failed on ", who(), ": ", what,
           timed_out ? " (another rank did not make the same call in time: it is stuck, slower than the timeout, or has exited)"
                     : " (a peer rank has probably exited)");
    }
  }

  template <typename O>
  void set_output(O& o, const Tensor& t) {
    switch (t.dtype) {
      case DType::f32: o.setOutput(t.data<float>(), t.numel()); break;
      case DType::i32: o.setOutput(t.data<int32_t>(), t.numel()); break;
      case DType::bf16: o.setOutput(t.data<uint16_t>(), t.numel()); break;
      default: fail("distributed.allReduce: reductions take f32, bf16 or i32 tensors; got ", dtype_name(t.dtype));
    }
  }

  // Every rank announces itself; all must come within the rendezvous timeout.
  void join() {
    const GroupOptions& o = options_;
    RLF_CHECK(o.world_size >= 1, "distributed: WORLD_SIZE must be at least 1; got ", o.world_size);
    RLF_CHECK(o.rank >= 0 && o.rank < o.world_size, "distributed: RANK must be in 0..", o.world_size - 1,
              " for WORLD_SIZE=", o.world_size, "; got ", o.rank);
    if (o.rendezvous == "tcp") {
      if (o.rank == 0) server_ = std::make_unique<TcpStoreServer>(o.master_addr, o.master_port, o.world_size);
      store_ = std::make_unique<TcpStoreClient>(o.master_addr, o.master_port, o.rank, o.world_size, o.rendezvous_timeout);
    } else if (o.rendezvous == "file") {
      RLF_CHECK(!o.file_dir.empty(), "distributed: --rdzv file://DIR needs a directory");
      RLF_CHECK(::access(o.file_dir.c_str(), W_OK) == 0, "distributed: the rendezvous directory ", o.file_dir,
                " does not exist or is not writable (", std::strerror(errno), ")");
      store_ = std::make_unique<FileKeyValueStore>(o.file_dir);
    } else {
      fail("distributed: rendezvous must be 'tcp' or 'file'; got '", o.rendezvous, "'");
    }
    const std::string world = std::to_string(o.world_size);
    store_->set("rlfarm/joined/" + std::to_string(o.rank), std::vector<char>(world.begin(), world.end()));
    std::vector<std::string> keys;
    for (int r = 0; r < o.world_size; ++r) keys.push_back("rlfarm/joined/" + std::to_string(r));
    try {
      store_->wait(keys, o.rendezvous_timeout);
    } catch (const StoreTimeout& timeout) {
      std::string missing;
      int count = 0;
      for (const auto& key : timeout.missing) missing += (count++ ? ", " : "") + key.substr(key.rfind('/') + 1);
      fail("rendezvous timed out after ", o.rendezvous_timeout.count() / 1000.0, " s at ", store_->where(), ": ",
           count == 1 ? "rank " : "ranks ", missing, " of WORLD_SIZE=", o.world_size,
           " never joined (not started, crashed, or pointed at another MASTER_ADDR/MASTER_PORT)");
    }
    // The TCP server refuses a different world size at hello; a file store
    // cannot, so every rank compares what the others wrote.
    for (int r = 0; r < o.world_size; ++r) {
      const auto theirs = store_->get(keys[r], o.rendezvous_timeout);
      const std::string text(theirs.begin(), theirs.end());
      RLF_CHECK(text == world, "rendezvous: rank ", r, " has WORLD_SIZE=", text, " but rank ", o.rank, " has WORLD_SIZE=",
                o.world_size, " (", store_->where(), ")");
    }
  }

  void connect() {
    const GroupOptions& o = options_;
    gloo::transport::tcp::attr attr;
    if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface) attr.iface = iface;
    else if (!o.transport_host.empty()) attr.hostname = o.transport_host;
    else if (o.rendezvous == "tcp") attr.hostname = is_loopback(o.master_addr) ? "127.0.0.1" : local_address_toward(o.master_addr);
    else attr.hostname = this_host();
    try {
      auto device = gloo::transport::tcp::CreateDevice(attr);
      auto context = std::make_shared<gloo::rendezvous::Context>(o.rank, o.world_size);
      context->setTimeout(o.rendezvous_timeout);
      GlooStoreView view(*store_, o.rendezvous_timeout);
      context->connectFullMesh(view, device);
      context->setTimeout(o.timeout);
      context_ = context;
    } catch (const std::exception& e) {
      fail("rendezvous: ", who(), " could not connect to its peers through Gloo (transport address ",
           attr.iface.empty() ? attr.hostname : "interface " + attr.iface, "): ", e.what());
    }
  }

  GroupOptions options_;
  std::unique_ptr<TcpStoreServer> server_;  // rank 0 with tcp rendezvous; outlives the client below
  std::unique_ptr<KeyValueStore> store_;
  std::shared_ptr<gloo::Context> context_;
  std::string broken_;
  uint32_t tag_ = 0;
};

}  // namespace

std::unique_ptr<ProcessGroup> create_process_group(const GroupOptions& options) {
  return std::make_unique<GlooGroup>(options);
}

#else  // built without Gloo

bool gloo_compiled() { return false; }
std::string gloo_version() { return ""; }

std::unique_ptr<ProcessGroup> create_process_group(const GroupOptions& options) {
  fail("distributed: this rlfarm addon was built without Gloo, so WORLD_SIZE=", options.world_size,
       " cannot run; install it (Debian/Ubuntu: apt-get install libgloo-dev) and rebuild the addon (npm rebuild rlfarm)");
}

#endif

}  // namespace rlfarm::distributed
