// A process group: the ranks of a data-parallel run and the collectives among
// them. One interface for every engine: Gloo serves host tensors (gloo.cpp),
// NCCL serves CUDA tensors (nccl.cpp). Calls block
// the calling thread (the binding runs them off the event loop) and must be
// made in the same order on every rank, as with any collective library.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "../core/tensor.h"
#include "store.h"

namespace rlfarm::distributed {

enum class ReduceOp { sum, avg, max, min };
ReduceOp parse_reduce_op(const std::string& name);
const char* reduce_op_name(ReduceOp op);
// What every engine checks of all_gather's and reduce_scatter's tensors (same dtype, world_size blocks).
void check_all_gather(const Tensor& in, const Tensor& out, int world_size);
void check_reduce_scatter(const Tensor& in, const Tensor& out, int world_size);

struct GroupOptions {
  int rank = 0;
  int world_size = 1;
  // Rendezvous: "tcp" (rank 0 serves a TcpStore on master_addr:master_port) or
  // "file" (Gloo's FileStore in file_dir, on a filesystem every rank shares).
  std::string rendezvous = "tcp";
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string file_dir;
  // The interface or address Gloo's TCP transport binds to; empty: the
  // address MASTER_ADDR is reached from (loopback for 127.0.0.1).
  std::string transport_host;
  Milliseconds timeout{std::chrono::minutes(5)};            // each collective
  Milliseconds rendezvous_timeout{std::chrono::minutes(5)};  // every rank joining
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const char* backend() const = 0;  // "gloo" or "nccl"

  // In place on every rank. avg divides after the sum (integers: truncates).
  virtual void all_reduce(const Tensor& t, ReduceOp op, Milliseconds timeout) = 0;
  // In place: every rank ends with root's values.
  virtual void broadcast(const Tensor& t, int root, Milliseconds timeout) = 0;
  // out holds world_size copies of in's size, rank-major.
  virtual void all_gather(const Tensor& in, const Tensor& out, Milliseconds timeout) = 0;
  // in holds world_size blocks of out's size; rank r gets the reduction of block r.
  virtual void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op, Milliseconds timeout) = 0;
  virtual void barrier(Milliseconds timeout) = 0;
  // Over a flat f32 buffer of n elements cut into world_size blocks of `block`
  // elements (the last ones shorter or empty), in place, moving each byte once
  // around the ring. reduce_scatter_blocks: rank r ends with the sum over every
  // rank of block r in its block r (its other blocks hold partial sums).
  // all_gather_blocks: every rank ends with rank r's block r in block r.
  virtual void reduce_scatter_blocks(float* data, int64_t n, int64_t block, Milliseconds timeout) = 0;
  virtual void all_gather_blocks(float* data, int64_t n, int64_t block, Milliseconds timeout) = 0;
  // The rendezvous store, for small control messages (configs, build ids).
  virtual KeyValueStore& store() = 0;
  virtual Milliseconds default_timeout() const = 0;
};

// Joins the group: serves or reaches the store, checks every rank came with
// the same world size within rendezvous_timeout (naming those that did not),
// and connects the engine. Throws, saying what to install, when rlfarm was
// built without Gloo and world_size > 1.
std::unique_ptr<ProcessGroup> create_process_group(const GroupOptions& options);

// Whether the Gloo engine was compiled in, and its version ("0.5.0") if so.
bool gloo_compiled();
std::string gloo_version();

}  // namespace rlfarm::distributed
