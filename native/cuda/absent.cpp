// Built instead of runtime.cu and kernels.cu when the CUDA backend is not
// compiled (no nvcc, or RLFARM_CUDA=0): the addon reports no CUDA devices, and
// anything that needs one fails with a message that says why.
#include "../core/cuda_runtime.h"
#include "../core/error.h"
#include "../ops/kernels.h"
#include "engine.h"

namespace rlfarm::cuda {
namespace {
[[noreturn]] void unavailable() {
  fail("this build of rlfarm has no CUDA backend (nvcc was not found when it was built, or RLFARM_CUDA=0 was set)");
}
}  // namespace

bool compiled() { return false; }
std::string compiled_archs() { return ""; }
int device_count() { return 0; }
std::string unavailable_reason() { return "rlfarm was built without its CUDA backend"; }
DeviceInfo device_info(int) { unavailable(); }
std::string gemm_backend() { return ""; }
void* malloc(int, size_t) { unavailable(); }
void free(int, void*) noexcept {}
void copy_to_device(int, void*, const void*, size_t) { unavailable(); }
void copy_to_host(int, void*, const void*, size_t) { unavailable(); }
void copy_device_to_device(int, void*, const void*, size_t) { unavailable(); }
void memset_zero(int, void*, size_t) { unavailable(); }
void synchronize(int) { unavailable(); }
void set_device(int) { unavailable(); }
void* stream_create(int) { unavailable(); }
void stream_destroy(int, void*) noexcept {}
bool stream_done(int, void*) { unavailable(); }

void logprobs(const LogprobsArgs&) { unavailable(); }
void logprobs_backward(const LogprobsBackwardArgs&) { unavailable(); }
void gae(const GaeArgs&) { unavailable(); }
void whiten(const WhitenArgs&) { unavailable(); }
void kl_penalty(const KlPenaltyArgs&) { unavailable(); }
void shape_rewards(const ShapeRewardsArgs&) { unavailable(); }
void ppo_policy_loss(const PpoPolicyLossArgs&) { unavailable(); }
void value_loss(const ValueLossArgs&) { unavailable(); }
void dpo_loss(const DpoLossArgs&) { unavailable(); }
void reward_loss(const RewardLossArgs&) { unavailable(); }
void elementwise(const ElementwiseArgs&) { unavailable(); }
void row_sum(const RowSumArgs&) { unavailable(); }
void ordered_sum(const OrderedSumArgs&) { unavailable(); }
void row_broadcast(const RowBroadcastArgs&) { unavailable(); }
void cast(const CastArgs&) { unavailable(); }
void gemm(const GemmArgs&) { unavailable(); }

std::unique_ptr<Engine> make_engine(const model::Transformer&, int, Precision) { unavailable(); }

}  // namespace rlfarm::cuda
