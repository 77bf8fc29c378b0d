#include "overlap.h"

#include <algorithm>
#include <chrono>

#include "../core/error.h"

namespace rlfarm::distributed {

namespace {
double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

std::vector<FlatRange> plan_buckets(const std::vector<FlatRange>& regions, int64_t bucket_elems) {
  RLF_CHECK(bucket_elems >= 0, "distributed: the bucket size must be >= 0 floats; got ", bucket_elems);
  std::vector<FlatRange> out;
  bool open = false;  // the last bucket may still grow
  for (const FlatRange& r : regions) {
    // Regions come last to first, so the one after a bucket ends where the bucket begins.
    if (open && r.end == out.back().begin) {
      out.back().begin = r.begin;
    } else {
      out.push_back(r);
    }
    open = out.back().end - out.back().begin < bucket_elems;
  }
  return out;
}

OverlappedAllReduce::OverlappedAllReduce(const Tensor& grads, std::vector<FlatRange> buckets)
    : grads_(grads), buckets_(std::move(buckets)), covered_(buckets_.size(), 0) {
  RLF_CHECK(grads_.defined() && grads_.dtype == DType::f32 && grads_.device().is_cpu(),
            "distributed: the overlapped gradient all-reduce takes a host f32 gradient buffer");
  for (const FlatRange& b : buckets_) {
    RLF_CHECK(b.begin >= 0 && b.begin < b.end && b.end <= grads_.numel(), "distributed: bucket [", b.begin, ", ", b.end,
              ") is not inside the ", grads_.numel(), " gradients");
  }
}

OverlappedAllReduce::~OverlappedAllReduce() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t k = 0; k < buckets_.size(); ++k) covered_[k] = buckets_[k].end - buckets_[k].begin;
  }
  changed_.notify_all();
  thread_.join();
}

void OverlappedAllReduce::start(InTurn in_turn) {
  RLF_CHECK(!thread_.joinable(), "distributed: the overlapped all-reduce was started twice");
  thread_ = std::thread([this, in_turn = std::move(in_turn)] {
    try {
      in_turn([this](ProcessGroup& group) { reduce_all(group); });
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  });
}

void OverlappedAllReduce::mark_final(const FlatRange& range) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const int64_t begin = std::max(range.begin, buckets_[k].begin), end = std::min(range.end, buckets_[k].end);
      if (end > begin) covered_[k] += end - begin;
    }
  }
  changed_.notify_all();
}

void OverlappedAllReduce::reduce_all(ProcessGroup& group) {
  for (size_t k = 0; k < buckets_.size(); ++k) {
    const FlatRange b = buckets_[k];
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return covered_[k] >= b.end - b.begin; });
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      group.all_reduce(view(grads_, b.begin, {b.end - b.begin}), ReduceOp::sum, group.default_timeout());
    } catch (const std::exception& e) {
      // Later buckets are not tried: the group is broken after an error.
      fail("model.backward: the gradient all-reduce overlapped with backward failed at bucket ", k + 1, " of ", buckets_.size(),
           " (gradients [", b.begin, ", ", b.end, ")): ", e.what());
    }
    reduce_ms_ += ms_since(start);
  }
}

OverlapTimes OverlappedAllReduce::finish() {
  const auto start = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t k = 0; k < buckets_.size(); ++k) covered_[k] = buckets_[k].end - buckets_[k].begin;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(error_);
  return OverlapTimes{reduce_ms_, ms_since(start), static_cast<int>(buckets_.size())};
}

}  // namespace rlfarm::distributed
