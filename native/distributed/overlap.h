// The gradient all-reduce overlapped with backward, as PyTorch DDP's reducer
// does it: the flat gradient buffer is cut into buckets (runs of the regions
// backward finishes one after another), and a communication thread sums each
// bucket over the ranks as soon as backward has made it final, while backward
// goes on with the layers before it. Buckets are reduced in one fixed order,
// the same on every rank, whatever the timing.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "../model/layout.h"
#include "process_group.h"

namespace rlfarm::distributed {

using model::FlatRange;

// Buckets over `regions` (in the order they become final): consecutive
// regions that sit end to end are joined until a bucket holds at least
// bucket_elems floats (0: every region is a bucket of its own).
std::vector<FlatRange> plan_buckets(const std::vector<FlatRange>& regions, int64_t bucket_elems);

struct OverlapTimes {
  double reduce_ms = 0;  // spent in the buckets' all-reduces (on the communication thread)
  double wait_ms = 0;    // the caller waited in finish() after its backward ended: communication not hidden
  int buckets = 0;
};

class OverlappedAllReduce {
 public:
  // Runs `work` on the group in the group's turn among its collectives (the
  // binding's ordering); it must call its argument once.
  using InTurn = std::function<void(const std::function<void(ProcessGroup&)>&)>;

  // Sums `buckets` of grads (a flat host f32 buffer) over the ranks, each
  // all-reduce within the group's collective timeout.
  OverlappedAllReduce(const Tensor& grads, std::vector<FlatRange> buckets);
  OverlappedAllReduce(const OverlappedAllReduce&) = delete;
  OverlappedAllReduce& operator=(const OverlappedAllReduce&) = delete;
  // Marks everything final and waits for the thread (an error after start()
  // without finish() is dropped: the caller is already failing).
  ~OverlappedAllReduce();

  // Starts the communication thread.
  void start(InTurn in_turn);
  // [begin, end) of the gradients is final (called by backward, any thread).
  void mark_final(const FlatRange& range);
  // Marks every bucket final (a rank with no backward, or one whose backward
  // failed: the ranks keep making the same collectives), waits for every
  // bucket's all-reduce, and throws the first error, naming the bucket.
  OverlapTimes finish();

 private:
  void reduce_all(ProcessGroup& group);

  Tensor grads_;
  std::vector<FlatRange> buckets_;
  std::vector<int64_t> covered_;  // floats of each bucket marked final
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread thread_;
  std::exception_ptr error_;
  double reduce_ms_ = 0;
};

}  // namespace rlfarm::distributed
