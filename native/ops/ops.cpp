#include "ops.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

#include "../cpu/gemm.h"
#include "cast.h"
#include "rl_math.h"
#include "../core/cuda_runtime.h"
#include "../core/error.h"
#include "../core/host_reads.h"

namespace rlfarm {

const char* dpo_variant_name(DpoVariant variant) {
  static const char* const names[] = {"sigmoid",   "robust",   "hinge",    "ipo",  "bco_pair",
                                      "sppo_hard", "nca_pair", "apo_zero", "simpo"};
  return names[static_cast<int>(variant)];
}

namespace ops {
namespace {

// Argument checks for one op; every message starts with "ops.<name>: ".
class Args {
 public:
  explicit Args(const char* op) : op_(op) {}

  template <typename... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    rlfarm::fail("ops.", op_, ": ", parts...);
  }

  void present(const Tensor& t, const char* name) const {
    if (!t.defined()) fail(name, " is required");
    check_usable(t, ("ops." + std::string(op_) + ": " + name).c_str());
  }

  void dtype(const Tensor& t, const char* name, std::initializer_list<DType> allowed) const {
    present(t, name);
    for (DType d : allowed) {
      if (t.dtype == d) return;
    }
    std::string names;
    for (DType d : allowed) names += (names.empty() ? "" : " or ") + std::string(dtype_name(d));
    fail(name, " must be ", names, "; got ", t.describe());
  }

  void same_shape(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) const {
    if (t.shape != ref.shape) {
      fail(name, " must have the shape of ", ref_name, ", ", shape_str(ref.shape), "; got ", shape_str(t.shape));
    }
  }

  void shape(const Tensor& t, const char* name, const Shape& expected, const char* why) const {
    if (t.shape != expected) fail(name, " must have shape ", shape_str(expected), " (", why, "); got ", shape_str(t.shape));
  }

  void same_device(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) const {
    if (t.device() != ref.device()) {
      fail(name, " is on ", t.device().name(), " but ", ref_name, " is on ", ref.device().name(),
           "; move them to one device with .to()");
    }
  }

  void nonempty(const Tensor& t, const char* name) const {
    if (t.numel() == 0) fail(name, " is empty (shape ", shape_str(t.shape), ")");
  }

  void number(double v, const char* name, double lo, double hi, bool lo_open = false, bool hi_open = false) const {
    const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (!ok) {
      fail(name, " must be in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]", "; got ", v);
    }
  }

  void positive(double v, const char* name) const {
    if (!(std::isfinite(v) && v > 0)) fail(name, " must be a finite number > 0; got ", v);
  }

 private:
  const char* op_;
};

MaskRef mask_ref(const Tensor& mask) { return MaskRef{mask.raw(), mask.dtype}; }

void check_mask(const Args& args, const Tensor& mask, const Tensor& ref, const char* ref_name) {
  args.dtype(mask, "mask", {DType::f32, DType::i32, DType::u8});
  args.same_shape(mask, "mask", ref, ref_name);
  args.same_device(mask, "mask", ref, ref_name);
}

// Runs the CPU or the CUDA version of a kernel on the device of `where`.
template <typename A>
void launch(const Tensor& where, void (*cpu_kernel)(const A&), void (*cuda_kernel)(const A&), const A& a) {
  const Device device = where.device();
  if (device.is_cpu()) {
    cpu_kernel(a);
  } else {
    cuda::set_device(device.index);
    cuda_kernel(a);
  }
}

// Copies a few floats of results back to the host.
template <int N>
struct HostStats {
  float v[N];
};
template <int N>
HostStats<N> read_stats(const Tensor& stats) {
  HostStats<N> out;
  const Tensor host = to_device(stats, Device::host());
  count_host_read(host.nbytes());
  for (int i = 0; i < N; ++i) out.v[i] = host.data<float>()[i];
  return out;
}

// The sum of a tensor's f32 values, in double, in order (as JavaScript adds a
// row-sum tensor's values), summed on the tensor's device: one double comes back.
double host_total(const Tensor& t) {
  const Tensor sum = empty({static_cast<int64_t>(sizeof(double))}, DType::u8, t.device());
  launch(t, cpu::ordered_sum, cuda::ordered_sum, OrderedSumArgs{t.data<float>(), t.numel(), static_cast<double*>(sum.raw())});
  const Tensor host = to_device(sum, Device::host());
  count_host_read(host.nbytes());
  double s;
  std::memcpy(&s, host.raw(), sizeof(s));
  return s;
}

// A mask as f32 (row sums take f32).
Tensor mask_f32(const Tensor& mask) { return mask.dtype == DType::f32 ? mask : cast(mask, DType::f32); }

double row_count(const Tensor& t) { return t.ndim() == 0 ? 1 : static_cast<double>(t.numel() / t.shape.back()); }

void check_targets(const Args& args, const Tensor& logits, const Tensor& targets) {
  args.dtype(logits, "logits", {DType::f32, DType::bf16});
  args.dtype(targets, "targets", {DType::i32});
  args.same_device(targets, "targets", logits, "logits");
  if (logits.ndim() < 1) args.fail("logits must have at least one dimension [..., V]; got a scalar");
  const int64_t vocab = logits.shape.back();
  if (vocab == 0) args.fail("logits has an empty last dimension (V = 0); shape ", shape_str(logits.shape));
  const Shape rows_shape(logits.shape.begin(), logits.shape.end() - 1);
  if (targets.shape != rows_shape) {
    args.fail("targets must have shape ", shape_str(rows_shape), " (logits ", shape_str(logits.shape),
              " without its last dimension); got ", shape_str(targets.shape));
  }
  if (targets.device().is_cpu()) {
    const int32_t* y = targets.data<int32_t>();
    for (int64_t i = 0, n = targets.numel(); i < n; ++i) {
      if (y[i] < 0 || y[i] >= vocab) args.fail("targets[", i, "] = ", y[i], " is outside [0, ", vocab, ")");
    }
  }
}

// CUDA kernels report an out-of-range target through a device flag.
Tensor bad_target_flag(const Tensor& targets) {
  if (targets.device().is_cpu()) return Tensor{};
  Tensor flag = empty({1}, DType::i32, targets.device());
  const int32_t none = INT32_MAX;  // kernels lower it to the first bad row with atomicMin
  cuda::copy_to_device(targets.device().index, flag.raw(), &none, sizeof(none));
  return flag;
}

void check_bad_target(const Args& args, const Tensor& flag, const Tensor& targets, int64_t vocab) {
  if (!flag.defined()) return;
  const Tensor host = to_device(flag, Device::host());
  const int32_t row = host.data<int32_t>()[0];
  if (row != INT32_MAX) {
    const Tensor y = to_device(targets, Device::host());
    args.fail("targets[", row, "] = ", y.data<int32_t>()[row], " is outside [0, ", vocab, ")");
  }
}

}  // namespace

LogprobsResult logprobs(const Tensor& logits, const Tensor& targets, double temperature, bool entropy) {
  const Args args("logprobs");
  check_targets(args, logits, targets);
  args.positive(temperature, "temperature");
  LogprobsResult out;
  out.logp = empty(targets.shape, DType::f32, logits.device());
  if (entropy) out.entropy = empty(targets.shape, DType::f32, logits.device());
  const Tensor flag = bad_target_flag(targets);
  LogprobsArgs a{logits.raw(),
                 logits.dtype,
                 targets.data<int32_t>(),
                 targets.numel(),
                 logits.shape.back(),
                 static_cast<float>(1.0 / temperature),
                 out.logp.data<float>(),
                 entropy ? out.entropy.data<float>() : nullptr,
                 flag.defined() ? flag.data<int32_t>() : nullptr};
  if (a.rows > 0) launch(logits, cpu::logprobs, cuda::logprobs, a);
  check_bad_target(args, flag, targets, a.vocab);
  return out;
}

Tensor logprobs_backward(const Tensor& logits, const Tensor& targets, const Tensor& grad_logp,
                         const Tensor& grad_entropy, double temperature) {
  const Args args("logprobsBackward");
  check_targets(args, logits, targets);
  args.positive(temperature, "temperature");
  if (!grad_logp.defined() && !grad_entropy.defined()) args.fail("give gradLogp, gradEntropy or both");
  for (const auto& [t, name] : {std::pair{&grad_logp, "gradLogp"}, std::pair{&grad_entropy, "gradEntropy"}}) {
    if (!t->defined()) continue;
    args.dtype(*t, name, {DType::f32});
    args.same_shape(*t, name, targets, "targets");
    args.same_device(*t, name, logits, "logits");
  }
  Tensor dlogits = empty(logits.shape, logits.dtype, logits.device());
  const Tensor flag = bad_target_flag(targets);
  LogprobsBackwardArgs a{logits.raw(),
                         logits.dtype,
                         targets.data<int32_t>(),
                         targets.numel(),
                         logits.shape.back(),
                         static_cast<float>(1.0 / temperature),
                         grad_logp.defined() ? grad_logp.data<float>() : nullptr,
                         grad_entropy.defined() ? grad_entropy.data<float>() : nullptr,
                         dlogits.raw(),
                         flag.defined() ? flag.data<int32_t>() : nullptr};
  if (a.rows > 0) launch(logits, cpu::logprobs_backward, cuda::logprobs_backward, a);
  check_bad_target(args, flag, targets, a.vocab);
  return dlogits;
}

GaeResult gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma, double lambda) {
  const Args args("gae");
  args.dtype(rewards, "rewards", {DType::f32});
  if (rewards.ndim() != 2) args.fail("rewards must be 2-D [B, T]; got ", rewards.describe());
  args.dtype(values, "values", {DType::f32});
  args.same_shape(values, "values", rewards, "rewards");
  args.same_device(values, "values", rewards, "rewards");
  check_mask(args, mask, rewards, "rewards");
  args.number(gamma, "gamma", 0, 1);
  args.number(lambda, "lambda", 0, 1);
  GaeResult out{empty(rewards.shape, DType::f32, rewards.device()), empty(rewards.shape, DType::f32, rewards.device())};
  GaeArgs a{rewards.data<float>(),       values.data<float>(),    mask_ref(mask),
            rewards.shape[0],            rewards.shape[1],        static_cast<float>(gamma),
            static_cast<float>(lambda),  out.advantages.data<float>(), out.returns.data<float>()};
  if (rewards.numel() > 0) launch(rewards, cpu::gae, cuda::gae, a);
  return out;
}

Tensor whiten(const Tensor& x, const Tensor& mask, bool shift_mean) {
  const Args args("whiten");
  args.dtype(x, "x", {DType::f32});
  check_mask(args, mask, x, "x");
  Tensor out = empty(x.shape, DType::f32, x.device());
  WhitenArgs a{x.data<float>(), mask_ref(mask), x.numel(), shift_mean, out.data<float>()};
  if (x.numel() > 0) launch(x, cpu::whiten, cuda::whiten, a);
  return out;
}

namespace {
Tensor kl_op(const char* op, const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator estimator,
             double clamp, bool grad) {
  const Args args(op);
  args.dtype(logp, "logp", {DType::f32});
  args.dtype(ref_logp, "refLogp", {DType::f32});
  args.same_shape(ref_logp, "refLogp", logp, "logp");
  args.same_device(ref_logp, "refLogp", logp, "logp");
  check_mask(args, mask, logp, "logp");
  if (clamp != 0) args.positive(clamp, "clamp");
  Tensor out = empty(logp.shape, DType::f32, logp.device());
  KlPenaltyArgs a{logp.data<float>(), ref_logp.data<float>(), mask_ref(mask), logp.numel(), estimator,
                  static_cast<float>(clamp), grad ? nullptr : out.data<float>(), grad ? out.data<float>() : nullptr};
  if (logp.numel() > 0) launch(logp, cpu::kl_penalty, cuda::kl_penalty, a);
  return out;
}
}  // namespace

Tensor kl_penalty(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator estimator,
                  double clamp) {
  return kl_op("klPenalty", logp, ref_logp, mask, estimator, clamp, false);
}

Tensor kl_penalty_grad(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator estimator,
                       double clamp) {
  return kl_op("klPenaltyGrad", logp, ref_logp, mask, estimator, clamp, true);
}

ShapeRewardsResult shape_rewards(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, const Tensor& scores,
                                 const Tensor& last_mask, double kl_coef, KlEstimator estimator, double clamp) {
  const Args args("shapeRewards");
  args.dtype(logp, "logp", {DType::f32});
  if (logp.ndim() != 2) args.fail("logp must be [B, T]; got ", logp.describe());
  args.dtype(ref_logp, "refLogp", {DType::f32});
  args.same_shape(ref_logp, "refLogp", logp, "logp");
  args.same_device(ref_logp, "refLogp", logp, "logp");
  check_mask(args, mask, logp, "logp");
  args.dtype(last_mask, "lastMask", {mask.dtype});
  args.same_shape(last_mask, "lastMask", logp, "logp");
  args.same_device(last_mask, "lastMask", logp, "logp");
  args.dtype(scores, "scores", {DType::f32});
  args.shape(scores, "scores", {logp.shape[0]}, "one score per row of logp");
  args.same_device(scores, "scores", logp, "logp");
  if (!std::isfinite(kl_coef)) args.fail("klCoef must be a finite number; got ", kl_coef);
  if (clamp != 0) args.positive(clamp, "clamp");
  ShapeRewardsResult r{empty(logp.shape, DType::f32, logp.device()), empty(logp.shape, DType::f32, logp.device())};
  ShapeRewardsArgs a{logp.data<float>(), ref_logp.data<float>(), mask_ref(mask), mask_ref(last_mask),
                     scores.data<float>(), logp.shape[0], logp.shape[1], estimator, static_cast<float>(clamp),
                     static_cast<float>(-kl_coef), r.kl.data<float>(), r.rewards.data<float>()};
  if (logp.numel() > 0) launch(logp, cpu::shape_rewards, cuda::shape_rewards, a);
  return r;
}

namespace {
Tensor elementwise_op(const char* op, const Tensor& a, const Tensor& b, ElementwiseOp kind, double alpha, double beta) {
  const Args args(op);
  args.dtype(a, "a", {DType::f32});
  if (b.defined()) {
    args.dtype(b, "b", {DType::f32});
    args.same_shape(b, "b", a, "a");
    args.same_device(b, "b", a, "a");
  }
  if (!std::isfinite(alpha) || !std::isfinite(beta)) args.fail("alpha and beta must be finite numbers");
  Tensor out = empty(a.shape, DType::f32, a.device());
  ElementwiseArgs e{a.data<float>(), b.defined() ? b.data<float>() : nullptr, out.data<float>(), a.numel(), kind,
                    static_cast<float>(alpha), static_cast<float>(beta)};
  if (a.numel() > 0) launch(a, cpu::elementwise, cuda::elementwise, e);
  return out;
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b, double alpha, double beta) {
  return elementwise_op("add", a, b, ElementwiseOp::axpby, alpha, beta);
}

Tensor mul(const Tensor& a, const Tensor& b) {
  const Args args("mul");
  args.present(b, "b");
  return elementwise_op("mul", a, b, ElementwiseOp::mul, 1.0, 1.0);
}

Tensor row_sum(const Tensor& x, const Tensor& mask) {
  const Args args("rowSum");
  args.dtype(x, "x", {DType::f32});
  if (x.ndim() < 1) args.fail("x must have at least one dimension [..., T]; got a scalar");
  if (mask.defined()) check_mask(args, mask, x, "x");
  const Shape rows_shape(x.shape.begin(), x.shape.end() - 1);
  Tensor out = empty(rows_shape, DType::f32, x.device());
  RowSumArgs a{x.data<float>(), mask.defined() ? mask_ref(mask) : MaskRef{nullptr, DType::u8},
               shape_numel(rows_shape), x.shape.back(), out.data<float>()};
  if (a.rows > 0) launch(x, cpu::row_sum, cuda::row_sum, a);
  return out;
}

Tensor broadcast_rows(const Tensor& values, const Tensor& mask) {
  const Args args("broadcastRows");
  args.dtype(values, "values", {DType::f32});
  args.dtype(mask, "mask", {DType::f32, DType::i32, DType::u8});
  args.same_device(mask, "mask", values, "values");
  if (mask.ndim() < 1) args.fail("mask must have at least one dimension [..., T]; got a scalar");
  const Shape rows_shape(mask.shape.begin(), mask.shape.end() - 1);
  args.shape(values, "values", rows_shape, "mask without its last dimension");
  Tensor out = empty(mask.shape, DType::f32, values.device());
  RowBroadcastArgs a{values.data<float>(), mask_ref(mask), shape_numel(rows_shape), mask.shape.back(), out.data<float>()};
  if (mask.numel() > 0) launch(values, cpu::row_broadcast, cuda::row_broadcast, a);
  return out;
}

PpoPolicyLossResult ppo_policy_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& advantages,
                                    const Tensor& mask, double clip_low, double clip_high, double dual_clip,
                                    Aggregate aggregate, double grad_scale, const Tensor& entropy) {
  const Args args("ppoPolicyLoss");
  args.dtype(logp, "logp", {DType::f32});
  if (logp.ndim() < 1 || logp.ndim() > 2) args.fail("logp must be [B, T] or [T]; got ", logp.describe());
  args.nonempty(logp, "logp");
  for (const auto& [t, name] : {std::pair{&old_logp, "oldLogp"}, std::pair{&advantages, "advantages"}}) {
    args.dtype(*t, name, {DType::f32});
    args.same_shape(*t, name, logp, "logp");
    args.same_device(*t, name, logp, "logp");
  }
  check_mask(args, mask, logp, "logp");
  args.number(clip_low, "clipLow", 0, 1, false, true);
  args.number(clip_high, "clipHigh", 0, 1e6);
  if (dual_clip != 0) args.number(dual_clip, "dualClip", 1, 1e6, true);
  if (entropy.defined()) {
    args.dtype(entropy, "entropy", {DType::f32});
    args.same_shape(entropy, "entropy", logp, "logp");
    args.same_device(entropy, "entropy", logp, "logp");
  }
  PpoPolicyLossResult out{};
  out.grad = empty(logp.shape, DType::f32, logp.device());
  Tensor stats = empty({kPpoStats}, DType::f32, logp.device());
  PpoPolicyLossArgs a{logp.data<float>(),
                      old_logp.data<float>(),
                      advantages.data<float>(),
                      mask_ref(mask),
                      static_cast<int64_t>(row_count(logp)),
                      logp.shape.back(),
                      static_cast<float>(clip_low),
                      static_cast<float>(clip_high),
                      static_cast<float>(dual_clip),
                      aggregate,
                      out.grad.data<float>(),
                      stats.data<float>()};
  launch(logp, cpu::ppo_policy_loss, cuda::ppo_policy_loss, a);
  const auto s = read_stats<kPpoStats>(stats);
  out.loss = s.v[0];
  out.clip_fraction = s.v[1];
  out.approx_kl = s.v[2];
  out.dual_clip_fraction = s.v[3];
  out.clip_low_fraction = s.v[4];
  out.clip_high_fraction = s.v[5];
  if (grad_scale != 1) out.grad = add(out.grad, Tensor{}, grad_scale, 0);
  const Tensor m = mask_f32(mask);
  out.tokens = host_total(row_sum(m, Tensor{}));
  if (entropy.defined()) {
    out.entropy_mean = out.tokens > 0 ? host_total(row_sum(entropy, m)) / out.tokens : 0;
  }
  return out;
}

ValueLossResult value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                           const Tensor& mask, double clip, double grad_scale) {
  const Args args("valueLoss");
  args.dtype(values, "values", {DType::f32});
  args.nonempty(values, "values");
  for (const auto& [t, name] : {std::pair{&old_values, "oldValues"}, std::pair{&returns, "returns"}}) {
    args.dtype(*t, name, {DType::f32});
    args.same_shape(*t, name, values, "values");
    args.same_device(*t, name, values, "values");
  }
  check_mask(args, mask, values, "values");
  if (clip >= 0) args.number(clip, "clip", 0, 1e30);
  ValueLossResult out{};
  out.grad = empty(values.shape, DType::f32, values.device());
  Tensor stats = empty({kValueStats}, DType::f32, values.device());
  ValueLossArgs a{values.data<float>(), old_values.data<float>(), returns.data<float>(), mask_ref(mask),
                  values.numel(),       static_cast<float>(clip), out.grad.data<float>(), stats.data<float>()};
  launch(values, cpu::value_loss, cuda::value_loss, a);
  const auto s = read_stats<kValueStats>(stats);
  out.loss = s.v[0];
  out.clip_fraction = s.v[1];
  if (grad_scale != 1) out.grad = add(out.grad, Tensor{}, grad_scale, 0);
  return out;
}

std::vector<Tensor> select_rows(const std::vector<Tensor>& xs, const std::vector<int64_t>& rows) {
  const Args args("selectRows");
  std::vector<Tensor> out;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    if (x.ndim() < 1) args.fail("tensor ", i, " must have a row dimension [B, ...]; got ", x.describe());
    for (const int64_t r : rows) {
      if (r < 0 || r >= x.shape[0]) args.fail("row ", r, " is outside tensor ", i, " (", x.describe(), ")");
    }
    Shape shape = x.shape;
    shape[0] = static_cast<int64_t>(rows.size());
    Tensor y = empty(shape, x.dtype, x.device());
    const Shape row_shape(x.shape.begin() + 1, x.shape.end());
    const int64_t width = shape_numel(row_shape);
    for (size_t j = 0; j < rows.size(); ++j) {
      copy_into(view(y, static_cast<int64_t>(j) * width, row_shape), view(x, rows[j] * width, row_shape));
    }
    out.push_back(std::move(y));
  }
  return out;
}

Tensor row_moments(const std::vector<Tensor>& xs, const Tensor& mask) {
  const Args args("rowMoments");
  args.dtype(mask, "mask", {DType::f32, DType::i32, DType::u8});
  if (mask.ndim() != 2) args.fail("mask must be [B, T]; got ", mask.describe());
  const Tensor m = mask_f32(mask);
  std::vector<Tensor> columns{row_sum(m, Tensor{})};
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string name = "xs[" + std::to_string(i) + "]";
    args.dtype(xs[i], name.c_str(), {DType::f32});
    args.same_shape(xs[i], name.c_str(), mask, "mask");
    args.same_device(xs[i], name.c_str(), mask, "mask");
    columns.push_back(row_sum(xs[i], m));
    columns.push_back(row_sum(mul(xs[i], xs[i]), m));
  }
  const int64_t B = mask.shape[0], K = static_cast<int64_t>(columns.size());
  Tensor out = empty({B, K}, DType::f32, Device::host());
  for (int64_t k = 0; k < K; ++k) {
    const Tensor host = to_device(columns[k], Device::host());
    count_host_read(host.nbytes());
    for (int64_t b = 0; b < B; ++b) out.data<float>()[b * K + k] = host.data<float>()[b];
  }
  return to_device(out, mask.device());
}

DpoVariant parse_dpo_variant(const std::string& name) {
  for (int i = 0; i <= static_cast<int>(DpoVariant::simpo); ++i) {
    if (name == dpo_variant_name(static_cast<DpoVariant>(i))) return static_cast<DpoVariant>(i);
  }
  fail("ops.dpoLoss: variant '", name,
       "' is unknown; expected one of sigmoid, robust, hinge, ipo, bco_pair, sppo_hard, nca_pair, apo_zero, simpo");
}

DpoLossResult dpo_loss(const DpoInputs& in, const DpoOptions& options) {
  const Args args("dpoLoss");
  const bool simpo = options.variant == DpoVariant::simpo;
  const bool needs_ref = !options.reference_free && !simpo;
  const bool needs_length = simpo || options.variant == DpoVariant::ipo;
  args.dtype(in.policy_chosen, "policyChosen", {DType::f32});
  if (in.policy_chosen.ndim() != 1) args.fail("policyChosen must be 1-D [B]; got ", in.policy_chosen.describe());
  args.nonempty(in.policy_chosen, "policyChosen");
  const Tensor& ref = in.policy_chosen;
  args.dtype(in.policy_rejected, "policyRejected", {DType::f32});
  args.same_shape(in.policy_rejected, "policyRejected", ref, "policyChosen");
  args.same_device(in.policy_rejected, "policyRejected", ref, "policyChosen");
  for (const auto& [t, name] : {std::pair{&in.ref_chosen, "refChosen"}, std::pair{&in.ref_rejected, "refRejected"}}) {
    if (!t->defined()) {
      if (needs_ref) {
        args.fail(name, " is required for variant '", dpo_variant_name(options.variant),
                  "' (or set referenceFree: true)");
      }
      continue;
    }
    args.dtype(*t, name, {DType::f32});
    args.same_shape(*t, name, ref, "policyChosen");
    args.same_device(*t, name, ref, "policyChosen");
  }
  Tensor lengths[2];
  const std::pair<const Tensor*, const char*> length_args[] = {{&in.chosen_length, "chosenLength"},
                                                               {&in.rejected_length, "rejectedLength"}};
  for (int k = 0; k < 2; ++k) {
    const auto& [t, name] = length_args[k];
    if (!t->defined()) {
      if (needs_length) args.fail(name, " is required for variant '", dpo_variant_name(options.variant), "'");
      continue;
    }
    args.dtype(*t, name, {DType::f32, DType::i32});
    args.same_shape(*t, name, ref, "policyChosen");
    args.same_device(*t, name, ref, "policyChosen");
    lengths[k] = cast(*t, DType::f32);
  }
  args.positive(options.beta, "beta");
  const bool robust = options.variant == DpoVariant::robust;
  args.number(options.label_smoothing, "labelSmoothing", 0, 0.5, false, robust);
  if (!std::isfinite(options.gamma)) args.fail("gamma must be a finite number; got ", options.gamma);
  if (!std::isfinite(options.grad_scale)) args.fail("gradScale must be a finite number; got ", options.grad_scale);

  const int64_t batch = ref.numel();
  const Device device = ref.device();
  DpoLossResult out{};
  out.grad_chosen = empty({batch}, DType::f32, device);
  out.grad_rejected = empty({batch}, DType::f32, device);
  out.chosen_reward = empty({batch}, DType::f32, device);
  out.rejected_reward = empty({batch}, DType::f32, device);
  Tensor stats = empty({DpoLossArgs::kStats}, DType::f32, device);
  const bool use_ref = !options.reference_free && !simpo;
  DpoLossArgs a{in.policy_chosen.data<float>(),
                in.policy_rejected.data<float>(),
                use_ref ? in.ref_chosen.data<float>() : nullptr,
                use_ref ? in.ref_rejected.data<float>() : nullptr,
                lengths[0].defined() ? lengths[0].data<float>() : nullptr,
                lengths[1].defined() ? lengths[1].data<float>() : nullptr,
                batch,
                options.variant,
                static_cast<float>(options.beta),
                static_cast<float>(options.label_smoothing),
                static_cast<float>(options.gamma),
                options.grad_scale,
                out.grad_chosen.data<float>(),
                out.grad_rejected.data<float>(),
                out.chosen_reward.data<float>(),
                out.rejected_reward.data<float>(),
                stats.data<float>()};
  launch(ref, cpu::dpo_loss, cuda::dpo_loss, a);
  const auto s = read_stats<DpoLossArgs::kStats>(stats);
  // The kernel counts bad lengths, so valid ones are not read back; a bad one is found and named here.
  if (s.v[2] > 0) {
    for (int k = 0; k < 2; ++k) {
      if (!lengths[k].defined()) continue;
      const Tensor host = to_device(lengths[k], Device::host());
      count_host_read(host.nbytes());
      for (int64_t i = 0; i < host.numel(); ++i) {
        const float v = host.data<float>()[i];
        if (!math::positive_length(v)) args.fail(length_args[k].second, "[", i, "] = ", v, " must be a positive length");
      }
    }
  }
  out.loss = s.v[0];
  out.accuracy = s.v[1];
  return out;
}

RewardLossResult reward_loss(const Tensor& chosen, const Tensor& rejected, const Tensor& margin,
                             double margin_scalar, double center_coef, double grad_scale) {
  const Args args("rewardLoss");
  args.dtype(chosen, "chosen", {DType::f32});
  if (chosen.ndim() != 1) args.fail("chosen must be 1-D [B]; got ", chosen.describe());
  args.nonempty(chosen, "chosen");
  args.dtype(rejected, "rejected", {DType::f32});
  args.same_shape(rejected, "rejected", chosen, "chosen");
  args.same_device(rejected, "rejected", chosen, "chosen");
  if (margin.defined()) {
    args.dtype(margin, "margin", {DType::f32});
    args.same_shape(margin, "margin", chosen, "chosen");
    args.same_device(margin, "margin", chosen, "chosen");
  } else if (!std::isfinite(margin_scalar)) {
    args.fail("margin must be a finite number or a tensor; got ", margin_scalar);
  }
  args.number(center_coef, "centerCoef", 0, 1e30);
  if (!std::isfinite(grad_scale)) args.fail("gradScale must be a finite number; got ", grad_scale);
  const int64_t batch = chosen.numel();
  RewardLossResult out{};
  out.grad_chosen = empty({batch}, DType::f32, chosen.device());
  out.grad_rejected = empty({batch}, DType::f32, chosen.device());
  Tensor stats = empty({RewardLossArgs::kStats}, DType::f32, chosen.device());
  RewardLossArgs a{chosen.data<float>(),
                   rejected.data<float>(),
                   margin.defined() ? margin.data<float>() : nullptr,
                   static_cast<float>(margin_scalar),
                   batch,
                   static_cast<float>(center_coef),
                   grad_scale,
                   out.grad_chosen.data<float>(),
                   out.grad_rejected.data<float>(),
                   stats.data<float>()};
  launch(chosen, cpu::reward_loss, cuda::reward_loss, a);
  const auto s = read_stats<RewardLossArgs::kStats>(stats);
  out.loss = s.v[0];
  out.accuracy = s.v[1];
  return out;
}

Tensor concat(const std::vector<Tensor>& xs) {
  const Args args("concat");
  if (xs.empty()) args.fail("tensors must hold at least one tensor");
  args.present(xs[0], "tensors[0]");
  const Tensor& first = xs[0];
  if (first.ndim() < 1) args.fail("tensors[0] must have a row dimension [B, ...]; got ", first.describe());
  const Shape row_shape(first.shape.begin() + 1, first.shape.end());
  int64_t rows = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string name = "tensors[" + std::to_string(i) + "]";
    args.present(xs[i], name.c_str());
    const Tensor& x = xs[i];
    if (x.dtype != first.dtype) args.fail(name, " is ", dtype_name(x.dtype), "; tensors[0] is ", dtype_name(first.dtype));
    args.same_device(x, name.c_str(), first, "tensors[0]");
    if (x.ndim() != first.ndim() || !std::equal(row_shape.begin(), row_shape.end(), x.shape.begin() + 1)) {
      args.fail(name, " is ", x.describe(), "; its rows must be shaped as tensors[0]'s (", first.describe(), ")");
    }
    rows += x.shape[0];
  }
  Shape shape = first.shape;
  shape[0] = rows;
  Tensor out = empty(shape, first.dtype, first.device());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    if (x.shape[0] > 0) copy_into(row_view(out, at, at + x.shape[0]), x);
    at += x.shape[0];
  }
  return out;
}

double total(const Tensor& x) {
  const Args args("total");
  args.present(x, "x");
  args.dtype(x, "x", {DType::f32});
  return host_total(x);
}

Tensor matmul(const Tensor& a, const Tensor& b, const Tensor& c, const MatmulOptions& options, const Tensor& bias) {
  const Args args("matmul");
  // On the cpu every tensor is f32; on CUDA a and b may be bf16 (tensor cores, fp32 accumulation).
  const auto check_matrices = [&](const Tensor& t, const char* name, bool operand) {
    args.present(t, name);
    if (operand && t.device().is_cuda()) args.dtype(t, name, {DType::f32, DType::bf16});
    else args.dtype(t, name, {DType::f32});
    if (t.ndim() != 2 && t.ndim() != 3) args.fail(name, " must be 2-D, or 3-D for a batch; got ", t.describe());
    if (t.device() != a.device()) args.same_device(t, name, a, "a");
  };
  check_matrices(a, "a", true);
  check_matrices(b, "b", true);
  const bool batched = a.ndim() == 3 || b.ndim() == 3;
  if (a.ndim() == 3 && b.ndim() == 3 && a.shape[0] != b.shape[0]) {
    args.fail("a and b must hold the same number of matrices; got a ", shape_str(a.shape), " and b ", shape_str(b.shape));
  }
  const int64_t batch = a.ndim() == 3 ? a.shape[0] : b.ndim() == 3 ? b.shape[0] : 1;
  // Rows, columns and row stride of one stored matrix, and the step between matrices (0: shared).
  const auto rows = [](const Tensor& t) { return t.shape[t.ndim() - 2]; };
  const auto cols = [](const Tensor& t) { return t.shape[t.ndim() - 1]; };
  const auto row_stride = [&](const Tensor& t) { return std::max<int64_t>(1, cols(t)); };  // >= 1, as BLAS wants
  const auto matrix_stride = [&](const Tensor& t) { return t.ndim() == 3 ? rows(t) * cols(t) : 0; };

  const char* a_op = options.trans_a ? "a^T" : "a";
  const char* b_op = options.trans_b ? "b^T" : "b";
  const int64_t a_rows = options.trans_a ? cols(a) : rows(a), a_cols = options.trans_a ? rows(a) : cols(a);
  const int64_t b_rows = options.trans_b ? cols(b) : rows(b), b_cols = options.trans_b ? rows(b) : cols(b);
  const bool explicit_sizes = options.m >= 0 || options.n >= 0 || options.k >= 0;
  const int64_t M = options.m >= 0 ? options.m : a_rows;
  const int64_t K = options.k >= 0 ? options.k : a_cols;
  const int64_t N = options.n >= 0 ? options.n : b_cols;
  if (M > a_rows || K > a_cols) {
    args.fail(a_op, " is ", a_rows, " x ", a_cols, " (a ", shape_str(a.shape), "); it has no ", M, " x ", K, " block");
  }
  if (options.k < 0 && b_rows != K) {
    args.fail(b_op, " must have K = ", K, " rows, the columns of ", a_op, "; got ", b_rows, " (b ", shape_str(b.shape),
              ")");
  }
  if (K > b_rows || N > b_cols) {
    args.fail(b_op, " is ", b_rows, " x ", b_cols, " (b ", shape_str(b.shape), "); it has no ", K, " x ", N, " block");
  }
  if (!std::isfinite(options.alpha)) args.fail("alpha must be a finite number; got ", options.alpha);
  if (!std::isfinite(options.beta)) args.fail("beta must be a finite number; got ", options.beta);

  const Shape result_shape = batched ? Shape{batch, M, N} : Shape{M, N};
  Tensor out = c;
  if (c.defined()) {
    check_matrices(c, "c", false);
    const bool fits = c.ndim() == static_cast<int>(result_shape.size()) && (!batched || c.shape[0] == batch) &&
                      (explicit_sizes ? rows(c) >= M && cols(c) >= N : c.shape == result_shape);
    if (!fits) {
      args.fail("c must have shape ", explicit_sizes ? "at least " : "", shape_str(result_shape), " (", a_op,
                " rows x ", b_op, " columns", batched ? ", per matrix of the batch" : "", "); got ", shape_str(c.shape));
    }
  } else {
    if (options.beta != 0) args.fail("beta = ", options.beta, " needs c, the matrix to accumulate into");
    out = empty(result_shape, DType::f32, a.device());
  }
  if (bias.defined()) {
    args.dtype(bias, "bias", {DType::f32});
    if (bias.device() != a.device()) args.same_device(bias, "bias", a, "a");
    if (batched) {
      args.fail("bias is for 2-D products; got a batch (a ", shape_str(a.shape), ", b ", shape_str(b.shape), ")");
    }
    if (bias.shape != Shape{N}) {
      args.fail("bias must have shape [", N, "] (a value per column of the result); got ", shape_str(bias.shape));
    }
  }
  GemmArgs g;
  g.trans_a = options.trans_a;
  g.trans_b = options.trans_b;
  g.m = M;
  g.n = N;
  g.k = K;
  g.batch = batch;
  g.alpha = static_cast<float>(options.alpha);
  g.beta = static_cast<float>(options.beta);
  g.a = GemmOperand{a.raw(), a.dtype, row_stride(a), matrix_stride(a)};
  g.b = GemmOperand{b.raw(), b.dtype, row_stride(b), matrix_stride(b)};
  g.c = out.data<float>();
  g.ldc = row_stride(out);
  g.c_outer = matrix_stride(out);
  g.bias = bias.defined() ? bias.data<float>() : nullptr;
  g.bf16_compute = a.dtype == DType::bf16 || b.dtype == DType::bf16;
  if (a.device().is_cuda()) {
    cuda::set_device(a.device().index);
    cuda::gemm(g);
  } else {
    cpu::gemm(g);
  }
  return out;
}

}  // namespace ops
}  // namespace rlfarm
