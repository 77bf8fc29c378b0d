// The N-API face of distributed::ProcessGroup (ts/distributed/index.ts).
// Every call runs as an AsyncWorker off the event loop and resolves a Promise.
// Collectives must run in the same order on every rank, but libuv's pool may
// start two workers in either order, so each call takes a ticket when it is
// made and runs only when every earlier ticket has run.
#include <napi.h>

#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <set>

#include "../core/error.h"
#include "../distributed/nccl.h"
#include "../distributed/process_group.h"
#include "distributed_wrap.h"
#include "tensor_wrap.h"

namespace rlfarm::binding {

struct GroupSlot {
  std::unique_ptr<distributed::ProcessGroup> group;       // Gloo: host tensors, the store, barriers
  std::unique_ptr<distributed::ProcessGroup> cuda_group;  // NCCL on cuda:local_rank, made by the first CUDA collective
  int local_rank = 0;
  std::mutex mutex;
  std::condition_variable turn;
  uint64_t next_ticket = 0;
  uint64_t serving = 0;
  std::set<uint64_t> given_up;  // turns taken but never run: skipped when they come

  // The group for tensors on `device`: Gloo for host tensors, NCCL for CUDA
  // ones (made in this turn, which every rank reaches at the same point).
  distributed::ProcessGroup& for_device(const Device& device, const char* op) {
    RLF_CHECK(group, "distributed.", op, ": the process group was not connected (init failed) or was destroyed");
    if (device.is_cpu()) return *group;
    if (!cuda_group) {
      RLF_CHECK(device.index == local_rank, "distributed.", op, ": rank ", group->rank(), "'s NCCL group runs on cuda:",
                local_rank, " (its LOCAL_RANK); this tensor is on ", device.name());
      try {
        cuda_group = distributed::create_nccl_group(*group, local_rank);
      } catch (const std::exception& e) {
        fail("distributed.", op, " of a tensor on ", device.name(), ": ", e.what());
      }
    }
    return *cuda_group;
  }

  // Lets the turn after `serving` go (the mutex held).
  void advance() {
    ++serving;
    while (given_up.erase(serving) > 0) ++serving;
    turn.notify_all();
  }
};

GroupTurn::GroupTurn(std::shared_ptr<GroupSlot> slot) : slot_(std::move(slot)) {
  std::lock_guard<std::mutex> lock(slot_->mutex);
  ticket_ = slot_->next_ticket++;
}

GroupTurn::~GroupTurn() {
  if (ran_) return;
  std::lock_guard<std::mutex> lock(slot_->mutex);
  if (slot_->serving == ticket_) slot_->advance();
  else slot_->given_up.insert(ticket_);
}

void GroupTurn::Run(const char* op, const std::function<void(distributed::ProcessGroup&)>& work) {
  RunInTurn([&] {
    RLF_CHECK(slot_->group, "distributed.", op, ": the process group was not connected (init failed) or was destroyed");
    work(*slot_->group);
  });
}

void GroupTurn::RunInTurn(const std::function<void()>& work) {
  RLF_CHECK(!ran_, "distributed: a turn runs once");
  ran_ = true;
  std::unique_lock<std::mutex> lock(slot_->mutex);
  slot_->turn.wait(lock, [&] { return slot_->serving == ticket_; });
  lock.unlock();
  struct Next {
    GroupSlot& slot;
    ~Next() {
      std::lock_guard<std::mutex> lock(slot.mutex);
      slot.advance();
    }
  } next{*slot_};
  work();
}

namespace {

using distributed::Milliseconds;
using distributed::ProcessGroup;

class GroupWork : public Napi::AsyncWorker {
 public:
  GroupWork(Napi::Env env, std::shared_ptr<GroupSlot> slot, const Napi::Object& self,
            std::function<void(GroupSlot&)> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "rlfarm.distributed"),
        deferred_(Napi::Promise::Deferred::New(env)),
        slot_(slot),
        turn_(std::move(slot)),
        self_(Napi::Persistent(self)),
        work_(std::move(work)),
        done_(std::move(done)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      turn_.RunInTurn([this] { work_(*slot_); });
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(done_ ? done_(Env()) : Env().Undefined()); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<GroupSlot> slot_;
  GroupTurn turn_;
  Napi::ObjectReference self_;  // keeps the group object alive while the work runs
  std::function<void(GroupSlot&)> work_;
  std::function<Napi::Value(Napi::Env)> done_;
};

int int_option(const Napi::Object& o, const char* name) {
  const double d = number_arg(o.Get(name), (std::string("distributed options: ") + name).c_str());
  RLF_CHECK(d == static_cast<double>(static_cast<int64_t>(d)), "distributed options: ", name, " must be an integer; got ", d);
  return static_cast<int>(d);
}

Milliseconds ms_arg(const Napi::Value& v, const char* what) {
  const double d = number_arg(v, what);
  RLF_CHECK(d > 0 && d <= 7 * 24 * 3600e3, what, " must be a positive number of milliseconds; got ", d);
  return Milliseconds(static_cast<int64_t>(d));
}

}  // namespace

class NativeProcessGroup : public Napi::ObjectWrap<NativeProcessGroup> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeProcessGroup",
                       {
                           InstanceMethod<&NativeProcessGroup::Connect>("connect"),
                           InstanceMethod<&NativeProcessGroup::AllReduce>("allReduce"),
                           InstanceMethod<&NativeProcessGroup::Broadcast>("broadcast"),
                           InstanceMethod<&NativeProcessGroup::AllGather>("allGather"),
                           InstanceMethod<&NativeProcessGroup::ReduceScatter>("reduceScatter"),
                           InstanceMethod<&NativeProcessGroup::Barrier>("barrier"),
                           InstanceMethod<&NativeProcessGroup::StoreSet>("storeSet"),
                           InstanceMethod<&NativeProcessGroup::StoreGet>("storeGet"),
                           InstanceMethod<&NativeProcessGroup::StoreErase>("storeErase"),
                           InstanceMethod<&NativeProcessGroup::ShareFromRankZero>("shareFromRankZero"),
                           InstanceMethod<&NativeProcessGroup::Destroy>("destroy"),
                       });
  }

  explicit NativeProcessGroup(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<NativeProcessGroup>(info), slot_(std::make_shared<GroupSlot>()) {}

 private:
  // Queues `work` on the slot (its group may be absent: connect and destroy set it).
  Napi::Value Queue(const Napi::CallbackInfo& info, std::function<void(GroupSlot&)> work,
                    std::function<Napi::Value(Napi::Env)> done = nullptr) {
    auto* w = new GroupWork(info.Env(), slot_, info.This().As<Napi::Object>(), std::move(work), std::move(done));
    w->Queue();
    return w->Promise();
  }

  // Queues a call on the group for tensors on `device`; it finds the group
  // when its turn comes, so calls made while init() runs wait for it, and
  // calls after destroy() fail.
  Napi::Value Collective(const Napi::CallbackInfo& info, const char* op, Device device, std::function<void(ProcessGroup&)> work,
                         std::function<Napi::Value(Napi::Env)> done = nullptr) {
    RLF_CHECK(connected_, "distributed.", op, ": the process group is not initialised or was destroyed; call distributed.init() first");
    return Queue(
        info, [op, device, work = std::move(work)](GroupSlot& slot) { work(slot.for_device(device, op)); }, std::move(done));
  }

  // connect({ rank, worldSize, localRank, rendezvous, masterAddr, masterPort, fileDir, timeoutMs, rendezvousTimeoutMs })
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    RLF_CHECK(!connected_, "distributed.init: this process group is already connected");
    RLF_CHECK(info[0].IsObject(), "distributed.init: options must be an object");
    const Napi::Object o = info[0].As<Napi::Object>();
    distributed::GroupOptions opts;
    opts.rank = int_option(o, "rank");
    const int local_rank = int_option(o, "localRank");
    RLF_CHECK(local_rank >= 0, "distributed options: localRank must be >= 0; got ", local_rank);
    opts.world_size = int_option(o, "worldSize");
    opts.rendezvous = string_arg(o.Get("rendezvous"), "distributed options: rendezvous");
    opts.master_addr = string_arg(o.Get("masterAddr"), "distributed options: masterAddr");
    opts.master_port = int_option(o, "masterPort");
    opts.file_dir = string_arg(o.Get("fileDir"), "distributed options: fileDir");
    opts.transport_host = string_arg(o.Get("transportHost"), "distributed options: transportHost");
    opts.timeout = ms_arg(o.Get("timeoutMs"), "distributed options: timeoutMs");
    opts.rendezvous_timeout = ms_arg(o.Get("rendezvousTimeoutMs"), "distributed options: rendezvousTimeoutMs");
    connected_ = true;
    default_timeout_ = opts.timeout;
    return Queue(info, [opts, local_rank](GroupSlot& slot) {
      slot.local_rank = local_rank;
      slot.group = distributed::create_process_group(opts);
    });
  }

  Milliseconds Timeout(const Napi::Value& v) {
    return v.IsUndefined() || v.IsNull() ? default_timeout_ : ms_arg(v, "timeoutMs");
  }

  // allReduce(t, op, timeoutMs?)
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    const char* op = "allReduce";
    const Tensor t = NativeTensor::FromValue(info[0], "distributed.allReduce: tensor");
    const auto reduce = distributed::parse_reduce_op(string_arg(info[1], "distributed.allReduce: op"));
    const Milliseconds ms = Timeout(info[2]);
    return Collective(info, op, t.device(), [t, reduce, ms](ProcessGroup& g) { g.all_reduce(t, reduce, ms); });
  }

  // broadcast(t, root, timeoutMs?)
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    const char* op = "broadcast";
    const Tensor t = NativeTensor::FromValue(info[0], "distributed.broadcast: tensor");
    const double root = number_arg(info[1], "distributed.broadcast: root");
    RLF_CHECK(root == static_cast<int>(root), "distributed.broadcast: root must be an integer rank; got ", root);
    const Milliseconds ms = Timeout(info[2]);
    return Collective(info, op, t.device(), [t, root, ms](ProcessGroup& g) { g.broadcast(t, static_cast<int>(root), ms); });
  }

  // allGather(in, out, timeoutMs?)
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    const char* op = "allGather";
    const Tensor in = NativeTensor::FromValue(info[0], "distributed.allGather: input");
    const Tensor out = NativeTensor::FromValue(info[1], "distributed.allGather: output");
    const Milliseconds ms = Timeout(info[2]);
    return Collective(info, op, in.device(), [in, out, ms](ProcessGroup& g) { g.all_gather(in, out, ms); });
  }

  // reduceScatter(in, out, op, timeoutMs?)
  Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
    const char* op = "reduceScatter";
    const Tensor in = NativeTensor::FromValue(info[0], "distributed.reduceScatter: input");
    const Tensor out = NativeTensor::FromValue(info[1], "distributed.reduceScatter: output");
    const auto reduce = distributed::parse_reduce_op(string_arg(info[2], "distributed.reduceScatter: op"));
    const Milliseconds ms = Timeout(info[3]);
    return Collective(info, op, in.device(), [in, out, reduce, ms](ProcessGroup& g) { g.reduce_scatter(in, out, reduce, ms); });
  }

  // barrier(timeoutMs?)
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    const char* op = "barrier";
    const Milliseconds ms = Timeout(info[0]);
    return Collective(info, op, Device::host(), [ms](ProcessGroup& g) { g.barrier(ms); });
  }

  // storeSet(key, value: string)
  Napi::Value StoreSet(const Napi::CallbackInfo& info) {
    const char* op = "storeSet";
    const std::string key = "rlfarm/user/" + string_arg(info[0], "distributed store: key");
    const std::string value = string_arg(info[1], "distributed store: value");
    return Collective(info, op, Device::host(), [key, value](ProcessGroup& g) { g.store().set(key, std::vector<char>(value.begin(), value.end())); });
  }

  // storeGet(key, timeoutMs?) -> string, waiting for the key
  Napi::Value StoreGet(const Napi::CallbackInfo& info) {
    const char* op = "storeGet";
    const std::string key = "rlfarm/user/" + string_arg(info[0], "distributed store: key");
    const Milliseconds ms = Timeout(info[1]);
    auto value = std::make_shared<std::string>();
    return Collective(
        info, op, Device::host(),
        [key, ms, value](ProcessGroup& g) {
          const auto bytes = g.store().get(key, ms);
          value->assign(bytes.begin(), bytes.end());
        },
        [value](Napi::Env env) { return Napi::String::New(env, *value); });
  }

  // storeErase(key)
  Napi::Value StoreErase(const Napi::CallbackInfo& info) {
    const char* op = "storeErase";
    const std::string key = "rlfarm/user/" + string_arg(info[0], "distributed store: key");
    return Collective(info, op, Device::host(), [key](ProcessGroup& g) { g.store().erase(key); });
  }

  // shareFromRankZero(key, bytes: u8 tensor (rank 0; others undefined), size)
  // -> u8 tensor: rank 0's bytes on every rank through the rendezvous store,
  // as rank 0's ncclUniqueId reaches the NCCL group (distributed/nccl.h).
  Napi::Value ShareFromRankZero(const Napi::CallbackInfo& info) {
    const char* op = "shareFromRankZero";
    const std::string key = "rlfarm/user/" + string_arg(info[0], "distributed.shareFromRankZero: key");
    const Tensor mine = NativeTensor::FromOptional(info[1], "distributed.shareFromRankZero: bytes");
    RLF_CHECK(!mine.defined() || (mine.dtype == DType::u8 && mine.device().is_cpu()),
              "distributed.shareFromRankZero: bytes must be a host u8 tensor; got ", mine.describe());
    const double size = number_arg(info[2], "distributed.shareFromRankZero: size");
    RLF_CHECK(size >= 0 && size <= (1 << 20) && size == static_cast<double>(static_cast<int64_t>(size)),
              "distributed.shareFromRankZero: size must be a whole number of bytes in [0, 1048576]; got ", size);
    auto out = std::make_shared<Tensor>();
    return Collective(
        info, op, Device::host(),
        [key, mine, size, out](ProcessGroup& g) {
          const std::vector<char> bytes = distributed::share_from_rank_zero(
              g, key,
              [&] {
                RLF_CHECK(mine.defined(), "distributed.shareFromRankZero: rank 0 must give the bytes");
                const char* p = static_cast<const char*>(mine.raw());
                return std::vector<char>(p, p + mine.nbytes());
              },
              static_cast<size_t>(size), g.default_timeout());
          *out = empty({static_cast<int64_t>(bytes.size())}, DType::u8, Device::host());
          if (!bytes.empty()) std::memcpy(out->raw(), bytes.data(), bytes.size());
        },
        [out](Napi::Env env) { return NativeTensor::Wrap(env, *out); });
  }

  // destroy(): closes the group after every call made before it has run.
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    connected_ = false;
    return Queue(info, [](GroupSlot& slot) {
      slot.cuda_group.reset();  // it uses the host group's store
      slot.group.reset();
    });
  }


 public:
  // The group's slot when it is connected; errors name `what`.
  static std::shared_ptr<GroupSlot> ConnectedSlot(const Napi::Value& value, const char* what) {
    const Napi::Env env = value.Env();
    const bool is_group = value.IsObject() && value.As<Napi::Object>().InstanceOf(addon_data(env).group_constructor.Value());
    RLF_CHECK(is_group, what, ": expected a process group (distributed.init() makes one)");
    NativeProcessGroup* self = Unwrap(value.As<Napi::Object>());
    RLF_CHECK(self->connected_, what, ": the process group is not initialised or was destroyed; call distributed.init() first");
    return self->slot_;
  }

 private:
  std::shared_ptr<GroupSlot> slot_;
  bool connected_ = false;  // connect() was called and destroy() was not
  Milliseconds default_timeout_{0};
};

Napi::Function DefineProcessGroup(Napi::Env env) {
  const Napi::Function constructor = NativeProcessGroup::Define(env);
  addon_data(env).group_constructor = Napi::Persistent(constructor);
  return constructor;
}

std::unique_ptr<GroupTurn> TakeGroupTurn(const Napi::Value& group, const char* what) {
  return std::make_unique<GroupTurn>(NativeProcessGroup::ConnectedSlot(group, what));
}

std::pair<int, int> GroupPlace(const Napi::Value& group, const char* what) {
  const std::shared_ptr<GroupSlot> slot = NativeProcessGroup::ConnectedSlot(group, what);
  // init() has resolved before anything holds the group, so connect has run.
  std::lock_guard<std::mutex> lock(slot->mutex);
  RLF_CHECK(slot->group, what, ": the process group was not connected (init failed) or was destroyed");
  return {slot->group->rank(), slot->group->world_size()};
}

}  // namespace rlfarm::binding
