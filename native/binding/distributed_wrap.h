// The N-API class behind ts/distributed/index.ts.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>

namespace rlfarm::distributed {
class ProcessGroup;
}

namespace rlfarm::binding {

Napi::Function DefineProcessGroup(Napi::Env env);

struct GroupSlot;

// A place in a process group's queue of calls. Collectives must run in the
// same order on every rank, so each call takes its turn when JavaScript makes
// it; Run waits for that turn on a worker thread. Work outside this file (the
// ZeRO-1 optimizer step) takes one too, to keep its collectives in order.
class GroupTurn {
 public:
  explicit GroupTurn(std::shared_ptr<GroupSlot> slot);
  GroupTurn(const GroupTurn&) = delete;
  GroupTurn& operator=(const GroupTurn&) = delete;
  // A turn not run gives its place up, so the calls after it still run.
  ~GroupTurn();
  // Waits for the turn, runs `work` on the group (an error names `op`), and lets the next call go.
  void Run(const char* op, const std::function<void(distributed::ProcessGroup&)>& work);
  // Waits for the turn, runs `work` (the group may be absent), and lets the next call go.
  void RunInTurn(const std::function<void()>& work);

 private:
  std::shared_ptr<GroupSlot> slot_;
  uint64_t ticket_ = 0;
  bool ran_ = false;
};

// The next turn on a NativeProcessGroup (connected, not destroyed); errors name `what`.
std::unique_ptr<GroupTurn> TakeGroupTurn(const Napi::Value& group, const char* what);

// { rank, world size } of a connected NativeProcessGroup; errors name `what`.
std::pair<int, int> GroupPlace(const Napi::Value& group, const char* what);

}  // namespace rlfarm::binding
