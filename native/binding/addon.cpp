// The rlfarm native addon: tensors, devices and the RLHF ops for JavaScript.
// Arguments arrive positionally from ts/ops.ts, which owns option names,
// defaults and unknown-key checks; value checks live in the core.
#include <napi.h>

#include <chrono>
#include <cstddef>

#include "../core/cuda_runtime.h"
#include "../core/error.h"
#include "../core/host_reads.h"
#include "../model/nn_math.h"
#include "../model/sampling.h"
#include "../ops/ops.h"
#include "../core/thread_pool.h"
#include "../cpu/dispatch.h"
#include "../cpu/gemm.h"
#include "call_count.h"
#include "../distributed/nccl.h"
#include "../distributed/process_group.h"
#include "distributed_wrap.h"
#include "loss_args.h"
#include "optimizer_wrap.h"
#include "model_wrap.h"
#include "tensor_wrap.h"

namespace rlfarm::binding {
namespace {

Napi::Object wrap(Napi::Env env, const Tensor& t) { return NativeTensor::Wrap(env, t); }
const Tensor& tensor(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return NativeTensor::FromValue(info[i], what);
}
Tensor optional(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return NativeTensor::FromOptional(info[i], what);
}

Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  Napi::Object cpu_device = Napi::Object::New(env);
  cpu_device.Set("kind", "cpu");
  cpu_device.Set("device", "cpu");
  cpu_device.Set("threads", thread_count());
  cpu_device.Set("simd", cpu::simd_level());
  out.Set(0u, cpu_device);
  for (int i = 0; i < cuda::device_count(); ++i) {
    const cuda::DeviceInfo d = cuda::device_info(i);
    Napi::Object gpu = Napi::Object::New(env);
    gpu.Set("kind", "cuda");
    gpu.Set("device", "cuda:" + std::to_string(i));
    gpu.Set("index", i);
    gpu.Set("name", d.name);
    gpu.Set("memory", static_cast<double>(d.total_memory));
    gpu.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    gpu.Set("multiprocessors", d.multiprocessors);
    out.Set(static_cast<uint32_t>(i + 1), gpu);
  }
  return out;
}

Napi::Value Backend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("threads", thread_count());
  out.Set("simd", cpu::simd_level());
  out.Set("nativeCalls", static_cast<double>(native_calls.load(std::memory_order_relaxed)));
  out.Set("hostReads", static_cast<double>(host_reads.load(std::memory_order_relaxed)));
  out.Set("hostReadBytes", static_cast<double>(host_read_bytes.load(std::memory_order_relaxed)));
  Napi::Array levels = Napi::Array::New(env);
  const auto supported = cpu::simd_levels_supported();
  for (size_t i = 0; i < supported.size(); ++i) levels.Set(static_cast<uint32_t>(i), supported[i]);
  out.Set("simdSupported", levels);
  out.Set("gemm", cpu::gemm_backend());
  Napi::Array gemm_backends = Napi::Array::New(env);
  const auto available = cpu::gemm_backends_available();
  for (size_t i = 0; i < available.size(); ++i) gemm_backends.Set(static_cast<uint32_t>(i), available[i]);
  out.Set("gemmAvailable", gemm_backends);
  out.Set("cudaCompiled", cuda::compiled());
  out.Set("cudaArchs", cuda::compiled_archs());
  out.Set("cudaGemm", cuda::device_count() > 0 ? cuda::gemm_backend() : std::string());
  out.Set("cudaDevices", cuda::device_count());
  out.Set("cudaUnavailableReason", cuda::device_count() > 0 ? std::string() : cuda::unavailable_reason());
  out.Set("hostCacheBytes", static_cast<double>(host_cache_bytes()));
  out.Set("glooVersion", distributed::gloo_version());  // empty: built without Gloo
  out.Set("ncclLibrary", distributed::nccl_library());   // empty: not loaded, and why:
  out.Set("ncclUnavailableReason", distributed::nccl_unavailable_reason());
  return out;
}

// ncclEnums() -> { dtypes: { f32, bf16, i32 }, ops: { sum, avg, max, min }, uniqueIdBytes }:
// the nccl.h values the NCCL group passes (nccl.h is not needed to build), for the tests.
Napi::Value NcclEnums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object dtypes = Napi::Object::New(env);
  for (const DType d : {DType::f32, DType::bf16, DType::i32}) dtypes.Set(dtype_name(d), distributed::nccl_dtype(d, "ncclEnums"));
  Napi::Object ops = Napi::Object::New(env);
  for (const auto op : {distributed::ReduceOp::sum, distributed::ReduceOp::avg, distributed::ReduceOp::max, distributed::ReduceOp::min}) {
    ops.Set(distributed::reduce_op_name(op), distributed::nccl_reduce_op(op));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("dtypes", dtypes);
  out.Set("ops", ops);
  out.Set("bytes", distributed::kNcclUint8);
  out.Set("uniqueIdBytes", static_cast<double>(distributed::kNcclUniqueIdBytes));
  out.Set("inProgress", distributed::kNcclInProgress);
  // ncclConfig_t (v2.14 layout) as NCCL_CONFIG_INITIALIZER fills it, with blocking = 0: field offsets and values.
  const distributed::NcclConfig c = distributed::nccl_config(false);
  Napi::Object config = Napi::Object::New(env);
  config.Set("sizeof", static_cast<double>(sizeof(distributed::NcclConfig)));
  config.Set("size", static_cast<double>(c.size));
  config.Set("magic", static_cast<double>(c.magic));
  config.Set("version", static_cast<double>(c.version));
  config.Set("blocking", c.blocking);
  Napi::Object offsets = Napi::Object::New(env);
  offsets.Set("size", static_cast<double>(offsetof(distributed::NcclConfig, size)));
  offsets.Set("magic", static_cast<double>(offsetof(distributed::NcclConfig, magic)));
  offsets.Set("version", static_cast<double>(offsetof(distributed::NcclConfig, version)));
  offsets.Set("blocking", static_cast<double>(offsetof(distributed::NcclConfig, blocking)));
  config.Set("offsets", offsets);
  out.Set("config", config);
  return out;
}

// ncclSettle(inProgressMs, finalState, timeoutMs) -> { state, timedOut, waitedMs, polls }:
// the NCCL group's wait (distributed::wait_nccl_settled) on a state that reads
// ncclInProgress for inProgressMs and then finalState, for the tests (no NCCL needed).
Napi::Value NcclSettle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double busy = info[0].As<Napi::Number>().DoubleValue();
  const int final_state = info[1].As<Napi::Number>().Int32Value();
  const double timeout = info[2].As<Napi::Number>().DoubleValue();
  RLF_CHECK(busy >= 0 && timeout >= 0 && timeout <= 60000, "ncclSettle: times in [0, 60000] ms");
  const auto start = std::chrono::steady_clock::now();
  const auto ready = start + std::chrono::duration<double, std::milli>(busy);
  int64_t polls = 0;
  const distributed::NcclSettled s = distributed::wait_nccl_settled(
      [&] {
        ++polls;
        return std::chrono::steady_clock::now() >= ready ? final_state : distributed::kNcclInProgress;
      },
      distributed::Milliseconds(static_cast<int64_t>(timeout)));
  const double waited = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  Napi::Object out = Napi::Object::New(env);
  out.Set("state", s.result);
  out.Set("timedOut", s.timed_out);
  out.Set("waitedMs", waited);
  out.Set("polls", static_cast<double>(polls));
  return out;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  empty_host_cache();
  return info.Env().Undefined();
}

Napi::Value SetSimdLevel(const Napi::CallbackInfo& info) {
  cpu::set_simd_level(string_arg(info[0], "setSimdLevel: level"));
  return info.Env().Undefined();
}

Napi::Value SetGemmBackend(const Napi::CallbackInfo& info) {
  cpu::set_gemm_backend(string_arg(info[0], "setGemmBackend: name"));
  return info.Env().Undefined();
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  const Device device = parse_device(string_arg(info[0], "synchronize: device"), "synchronize");
  if (device.is_cuda()) {
    RLF_CHECK(device.index < cuda::device_count(), "synchronize: ", device.name(), " is not available");
    cuda::synchronize(device.index);
  }
  return info.Env().Undefined();
}

Napi::Value MapFile(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), map_file(string_arg(info[0], "mapFile: path")));
}

// view(tensor, offset elements, shape): a tensor over part of another's memory.
Napi::Value View(const Napi::CallbackInfo& info) {
  const Tensor& base = tensor(info, 0, "view: tensor");
  const double offset = number_arg(info[1], "view: offset");
  return wrap(info.Env(), view(base, static_cast<int64_t>(offset), shape_from_js(info[2], "view")));
}

// viewBytes(u8 tensor, byteOffset, dtype, shape)
Napi::Value ViewBytes(const Napi::CallbackInfo& info) {
  const Tensor& bytes = tensor(info, 0, "viewBytes: bytes");
  const double offset = number_arg(info[1], "viewBytes: byteOffset");
  const DType dtype = parse_dtype(string_arg(info[2], "viewBytes: dtype"), "viewBytes");
  return wrap(info.Env(), view_bytes_as(bytes, static_cast<int64_t>(offset), dtype, shape_from_js(info[3], "viewBytes")));
}

Napi::Value Logprobs(const Napi::CallbackInfo& info) {
  const auto r = ops::logprobs(tensor(info, 0, "ops.logprobs: logits"), tensor(info, 1, "ops.logprobs: targets"),
                               number_arg(info[2], "ops.logprobs: temperature"),
                               bool_arg(info[3], "ops.logprobs: entropy"));
  return tensors_object(info.Env(), {{"logp", r.logp}, {"entropy", r.entropy}});
}

Napi::Value LogprobsBackward(const Napi::CallbackInfo& info) {
  const Tensor d = ops::logprobs_backward(
      tensor(info, 0, "ops.logprobsBackward: logits"), tensor(info, 1, "ops.logprobsBackward: targets"),
      optional(info, 2, "ops.logprobsBackward: gradLogp"), optional(info, 3, "ops.logprobsBackward: gradEntropy"),
      number_arg(info[4], "ops.logprobsBackward: temperature"));
  return wrap(info.Env(), d);
}

Napi::Value Gae(const Napi::CallbackInfo& info) {
  const auto r = ops::gae(tensor(info, 0, "ops.gae: rewards"), tensor(info, 1, "ops.gae: values"),
                          tensor(info, 2, "ops.gae: mask"), number_arg(info[3], "ops.gae: gamma"),
                          number_arg(info[4], "ops.gae: lambda"));
  return tensors_object(info.Env(), {{"advantages", r.advantages}, {"returns", r.returns}});
}

Napi::Value Whiten(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::whiten(tensor(info, 0, "ops.whiten: x"), tensor(info, 1, "ops.whiten: mask"),
                                      bool_arg(info[2], "ops.whiten: shiftMean")));
}

KlEstimator kl_estimator(const Napi::Value& value, const char* op) {
  const std::string name = string_arg(value, (std::string(op) + ": estimator").c_str());
  if (name == "k1") return KlEstimator::k1;
  if (name == "k2") return KlEstimator::k2;
  if (name == "k3") return KlEstimator::k3;
  fail(op, ": estimator must be 'k1', 'k2' or 'k3'; got '", name, "'");
}

Napi::Value KlPenalty(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::kl_penalty(tensor(info, 0, "ops.klPenalty: logp"),
                                          tensor(info, 1, "ops.klPenalty: refLogp"),
                                          tensor(info, 2, "ops.klPenalty: mask"), kl_estimator(info[3], "ops.klPenalty"),
                                          number_arg(info[4], "ops.klPenalty: clamp")));
}

Napi::Value KlPenaltyGrad(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::kl_penalty_grad(tensor(info, 0, "ops.klPenaltyGrad: logp"),
                                               tensor(info, 1, "ops.klPenaltyGrad: refLogp"),
                                               tensor(info, 2, "ops.klPenaltyGrad: mask"),
                                               kl_estimator(info[3], "ops.klPenaltyGrad"),
                                               number_arg(info[4], "ops.klPenaltyGrad: clamp")));
}

// shapeRewards(logp, refLogp, mask, scores, lastMask, klCoef, estimator, clamp) -> { kl, rewards }
Napi::Value ShapeRewards(const Napi::CallbackInfo& info) {
  const auto r = ops::shape_rewards(
      tensor(info, 0, "ops.shapeRewards: logp"), tensor(info, 1, "ops.shapeRewards: refLogp"),
      tensor(info, 2, "ops.shapeRewards: mask"), tensor(info, 3, "ops.shapeRewards: scores"),
      tensor(info, 4, "ops.shapeRewards: lastMask"), number_arg(info[5], "ops.shapeRewards: klCoef"),
      kl_estimator(info[6], "ops.shapeRewards"), number_arg(info[7], "ops.shapeRewards: clamp"));
  return tensors_object(info.Env(), {{"kl", r.kl}, {"rewards", r.rewards}});
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::add(tensor(info, 0, "ops.add: a"), optional(info, 1, "ops.add: b"),
                                   number_arg(info[2], "ops.add: alpha"), number_arg(info[3], "ops.add: beta")));
}

Napi::Value Mul(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::mul(tensor(info, 0, "ops.mul: a"), tensor(info, 1, "ops.mul: b")));
}

Napi::Value RowSum(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::row_sum(tensor(info, 0, "ops.rowSum: x"), optional(info, 1, "ops.rowSum: mask")));
}

Napi::Value BroadcastRows(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::broadcast_rows(tensor(info, 0, "ops.broadcastRows: values"),
                                              tensor(info, 1, "ops.broadcastRows: mask")));
}

// ppoPolicyLoss(logp, ...8 arguments (loss_args.h), entropy)
Napi::Value PpoPolicyLoss(const Napi::CallbackInfo& info) {
  const Tensor& logp = tensor(info, 0, "ops.ppoPolicyLoss: logp");
  const PpoLossArgs args = ppo_loss_args([&](uint32_t i) { return info[i + 1]; }, "ops.ppoPolicyLoss: ");
  const Tensor entropy = optional(info, 9, "ops.ppoPolicyLoss: entropy");
  return ppo_loss_object(info.Env(), ppo_policy_loss(logp, args, entropy), entropy.defined());
}

// valueLoss(values, ...5 arguments (loss_args.h))
Napi::Value ValueLoss(const Napi::CallbackInfo& info) {
  const Tensor& values = tensor(info, 0, "ops.valueLoss: values");
  const ValueLossArgs args = value_loss_args([&](uint32_t i) { return info[i + 1]; }, "ops.valueLoss: ");
  return value_loss_object(info.Env(), value_loss(values, args));
}

// A list of tensors from a JavaScript array.
std::vector<Tensor> tensor_list(const Napi::Value& value, const char* what) {
  if (!value.IsArray()) fail(what, " must be an array of Tensors");
  const Napi::Array array = value.As<Napi::Array>();
  std::vector<Tensor> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const std::string name = std::string(what) + "[" + std::to_string(i) + "]";
    out.push_back(NativeTensor::FromValue(array.Get(i), name.c_str()));
  }
  return out;
}

// selectRows(tensors, rows: Int32Array) -> tensors
Napi::Value SelectRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::vector<Tensor> xs = tensor_list(info[0], "ops.selectRows: tensors");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    fail("ops.selectRows: rows must be an Int32Array");
  }
  const Napi::Int32Array rows_js = info[1].As<Napi::Int32Array>();
  const std::vector<int64_t> rows(rows_js.Data(), rows_js.Data() + rows_js.ElementLength());
  const std::vector<Tensor> ys = ops::select_rows(xs, rows);
  Napi::Array out = Napi::Array::New(env, ys.size());
  for (size_t i = 0; i < ys.size(); ++i) out.Set(static_cast<uint32_t>(i), wrap(env, ys[i]));
  return out;
}

// concat(tensors) -> their rows in turn
Napi::Value Concat(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::concat(tensor_list(info[0], "ops.concat: tensors")));
}

// total(x) -> number
Napi::Value Total(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ops::total(tensor(info, 0, "ops.total: x")));
}

// rowMoments(xs, mask) -> [B, 1 + 2k]
Napi::Value RowMoments(const Napi::CallbackInfo& info) {
  return wrap(info.Env(), ops::row_moments(tensor_list(info[0], "ops.rowMoments: xs"), tensor(info, 1, "ops.rowMoments: mask")));
}

Napi::Value DpoLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) fail("ops.dpoLoss: inputs must be an object");
  const Napi::Object in = info[0].As<Napi::Object>();
  ops::DpoInputs inputs;
  inputs.policy_chosen = NativeTensor::FromOptional(in.Get("policyChosen"), "ops.dpoLoss: policyChosen");
  inputs.policy_rejected = NativeTensor::FromOptional(in.Get("policyRejected"), "ops.dpoLoss: policyRejected");
  inputs.ref_chosen = NativeTensor::FromOptional(in.Get("refChosen"), "ops.dpoLoss: refChosen");
  inputs.ref_rejected = NativeTensor::FromOptional(in.Get("refRejected"), "ops.dpoLoss: refRejected");
  inputs.chosen_length = NativeTensor::FromOptional(in.Get("chosenLength"), "ops.dpoLoss: chosenLength");
  inputs.rejected_length = NativeTensor::FromOptional(in.Get("rejectedLength"), "ops.dpoLoss: rejectedLength");
  ops::DpoOptions options;
  options.variant = ops::parse_dpo_variant(string_arg(info[1], "ops.dpoLoss: variant"));
  options.beta = number_arg(info[2], "ops.dpoLoss: beta");
  options.label_smoothing = number_arg(info[3], "ops.dpoLoss: labelSmoothing");
  options.gamma = number_arg(info[4], "ops.dpoLoss: gamma");
  options.reference_free = bool_arg(info[5], "ops.dpoLoss: referenceFree");
  options.grad_scale = number_arg(info[6], "ops.dpoLoss: gradScale");
  const auto r = ops::dpo_loss(inputs, options);
  Napi::Object out = tensors_object(env, {{"gradChosen", r.grad_chosen}, {"gradRejected", r.grad_rejected},
                                          {"chosenReward", r.chosen_reward}, {"rejectedReward", r.rejected_reward}});
  out.Set("loss", r.loss);
  out.Set("accuracy", r.accuracy);
  return out;
}

Napi::Value RewardLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tensor margin;
  double margin_scalar = 0.0;
  if (info[2].IsNumber()) {
    margin_scalar = info[2].As<Napi::Number>().DoubleValue();
  } else {
    margin = optional(info, 2, "ops.rewardLoss: margin");
  }
  const auto r = ops::reward_loss(tensor(info, 0, "ops.rewardLoss: chosen"), tensor(info, 1, "ops.rewardLoss: rejected"),
                                  margin, margin_scalar, number_arg(info[3], "ops.rewardLoss: centerCoef"),
                                  number_arg(info[4], "ops.rewardLoss: gradScale"));
  Napi::Object out = tensors_object(env, {{"gradChosen", r.grad_chosen}, {"gradRejected", r.grad_rejected}});
  out.Set("loss", r.loss);
  out.Set("accuracy", r.accuracy);
  return out;
}

// Sizes arrive as -1 when not given (the shapes decide).
// nnMath(name, x[, y]): the per-element math the CPU and CUDA engines share
// (model/nn_math.h), evaluated on the host over plain numbers, for the tests:
// gelu, geluGrad (x); swiglu, swigluGradGate, swigluGradUp (gate x, up y; dy = 1);
// onlineLse (scores x) and onlineMean (scores x, values y): the fused
// attention's online softmax after each of x's scores, its log-sum-exp and its
// softmax-weighted mean of y.
Napi::Value NnMath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = string_arg(info[0], "nnMath: name");
  const auto numbers = [&](size_t i, const char* what) {
    RLF_CHECK(info[i].IsArray(), "nnMath: ", what, " must be an array of numbers");
    const Napi::Array a = info[i].As<Napi::Array>();
    std::vector<float> v(a.Length());
    for (uint32_t k = 0; k < a.Length(); ++k) v[k] = static_cast<float>(number_arg(a.Get(k), "nnMath: an element"));
    return v;
  };
  const std::vector<float> x = numbers(1, "x");
  const bool two = name.rfind("swiglu", 0) == 0 || name == "onlineMean";
  const std::vector<float> y = two ? numbers(2, "y") : std::vector<float>();
  RLF_CHECK(!two || y.size() == x.size(), "nnMath: y must have x's length, ", x.size(), "; got ", y.size());
  Napi::Array out = Napi::Array::New(env, x.size());
  float m = -INFINITY, l = 0.0f, acc = 0.0f;  // the online softmax's state over x[0..k]
  for (size_t k = 0; k < x.size(); ++k) {
    float r;
    if (name == "onlineLse" || name == "onlineMean") {
      float p;
      const float alpha = model::math::online_softmax_fold(m, l, x[k], p);
      if (two) acc = acc * alpha + p * y[k];
      r = two ? acc / l : m + std::log(l);
    } else if (name == "gelu") r = model::math::gelu(x[k]);
    else if (name == "geluGrad") r = model::math::gelu_grad(x[k]);
    else if (name == "swiglu") r = model::math::swiglu(x[k], y[k]);
    else if (name == "swigluGradGate" || name == "swigluGradUp") {
      float dg, du;
      model::math::swiglu_grad(x[k], y[k], 1.0f, dg, du);
      r = name == "swigluGradGate" ? dg : du;
    } else {
      fail("nnMath: name must be gelu, geluGrad, swiglu, swigluGradGate, swigluGradUp, onlineLse or onlineMean; got '",
           name, "'");
    }
    out.Set(static_cast<uint32_t>(k), static_cast<double>(r));
  }
  return out;
}

// sampleToken(logits, temperature, topK, topP, u): model::sample_token (the
// rules of model/sampling_math.h, which the CUDA sampler runs too) on plain
// numbers, with the draw u given, for the tests: { token, logprob }.
Napi::Value SampleToken(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RLF_CHECK(info[0].IsArray(), "sampleToken: logits must be an array of numbers");
  const Napi::Array a = info[0].As<Napi::Array>();
  RLF_CHECK(a.Length() > 0, "sampleToken: logits must not be empty");
  std::vector<float> logits(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) logits[k] = static_cast<float>(number_arg(a.Get(k), "sampleToken: a logit"));
  const double temperature = number_arg(info[1], "sampleToken: temperature");
  const double top_k = number_arg(info[2], "sampleToken: topK");
  const double top_p = number_arg(info[3], "sampleToken: topP");
  const double u = number_arg(info[4], "sampleToken: u");
  RLF_CHECK(temperature >= 0, "sampleToken: temperature must be >= 0; got ", temperature);
  RLF_CHECK(top_k >= 0 && top_k == static_cast<double>(static_cast<int64_t>(top_k)), "sampleToken: topK must be an integer >= 0; got ", top_k);
  RLF_CHECK(top_p > 0 && top_p <= 1, "sampleToken: topP must be in (0, 1]; got ", top_p);
  RLF_CHECK(u >= 0 && u < 1, "sampleToken: u must be in [0, 1); got ", u);
  model::SampleScratch scratch;
  const model::Sample s = model::sample_token(logits.data(), static_cast<int64_t>(logits.size()), static_cast<float>(temperature),
                                              static_cast<int64_t>(top_k), static_cast<float>(top_p), u, scratch);
  Napi::Object out = Napi::Object::New(env);
  out.Set("token", s.token);
  out.Set("logprob", static_cast<double>(s.logprob));
  return out;
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  ops::MatmulOptions options;
  options.trans_a = bool_arg(info[2], "ops.matmul: transA");
  options.trans_b = bool_arg(info[3], "ops.matmul: transB");
  options.alpha = number_arg(info[4], "ops.matmul: alpha");
  options.beta = number_arg(info[5], "ops.matmul: beta");
  options.m = static_cast<int64_t>(number_arg(info[7], "ops.matmul: m"));
  options.n = static_cast<int64_t>(number_arg(info[8], "ops.matmul: n"));
  options.k = static_cast<int64_t>(number_arg(info[9], "ops.matmul: k"));
  return wrap(info.Env(), ops::matmul(tensor(info, 0, "ops.matmul: a"), tensor(info, 1, "ops.matmul: b"),
                                      optional(info, 6, "ops.matmul: c"), options,
                                      optional(info, 10, "ops.matmul: bias")));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->state = std::make_shared<EnvState>();
  data->state->env = env;
  data->state->thread = std::this_thread::get_id();
  const Napi::Function constructor = NativeTensor::Define(env);
  data->tensor_constructor = Napi::Persistent(constructor);
  env.SetInstanceData<AddonData>(data);  // deleted when this environment goes away

  exports.Set("NativeTensor", constructor);
  exports.Set("devices", Napi::Function::New<CountedFunction<Devices>>(env, "devices"));
  exports.Set("backend", Napi::Function::New<CountedFunction<Backend>>(env, "backend"));
  exports.Set("setSimdLevel", Napi::Function::New<CountedFunction<SetSimdLevel>>(env, "setSimdLevel"));
  exports.Set("setGemmBackend", Napi::Function::New<CountedFunction<SetGemmBackend>>(env, "setGemmBackend"));
  exports.Set("synchronize", Napi::Function::New<CountedFunction<Synchronize>>(env, "synchronize"));
  exports.Set("emptyCache", Napi::Function::New<CountedFunction<EmptyCache>>(env, "emptyCache"));
  exports.Set("ncclEnums", Napi::Function::New<CountedFunction<NcclEnums>>(env, "ncclEnums"));
  exports.Set("ncclSettle", Napi::Function::New<CountedFunction<NcclSettle>>(env, "ncclSettle"));
  exports.Set("mapFile", Napi::Function::New<CountedFunction<MapFile>>(env, "mapFile"));
  exports.Set("view", Napi::Function::New<CountedFunction<View>>(env, "view"));
  exports.Set("viewBytes", Napi::Function::New<CountedFunction<ViewBytes>>(env, "viewBytes"));
  const Napi::Function model_constructor = NativeModel::Define(env);
  data->model_constructor = Napi::Persistent(model_constructor);
  exports.Set("NativeModel", model_constructor);
  const Napi::Function optimizer_constructor = NativeAdamW::Define(env);
  data->optimizer_constructor = Napi::Persistent(optimizer_constructor);
  exports.Set("NativeAdamW", optimizer_constructor);
  exports.Set("nnMath", Napi::Function::New<CountedFunction<NnMath>>(env, "nnMath"));
  exports.Set("cublasltPlan", Napi::Function::New<CountedFunction<CublasltPlan>>(env, "cublasltPlan"));
  exports.Set("cudaPlan", Napi::Function::New<CountedFunction<CudaPlan>>(env, "cudaPlan"));
  exports.Set("cudaGeneratePlan", Napi::Function::New<CountedFunction<CudaGeneratePlan>>(env, "cudaGeneratePlan"));
  exports.Set("sampleToken", Napi::Function::New<CountedFunction<SampleToken>>(env, "sampleToken"));
  exports.Set("NativeProcessGroup", DefineProcessGroup(env));
  Napi::Object ops = Napi::Object::New(env);
  ops.Set("logprobs", Napi::Function::New<CountedFunction<Logprobs>>(env, "logprobs"));
  ops.Set("logprobsBackward", Napi::Function::New<CountedFunction<LogprobsBackward>>(env, "logprobsBackward"));
  ops.Set("gae", Napi::Function::New<CountedFunction<Gae>>(env, "gae"));
  ops.Set("whiten", Napi::Function::New<CountedFunction<Whiten>>(env, "whiten"));
  ops.Set("klPenalty", Napi::Function::New<CountedFunction<KlPenalty>>(env, "klPenalty"));
  ops.Set("klPenaltyGrad", Napi::Function::New<CountedFunction<KlPenaltyGrad>>(env, "klPenaltyGrad"));
  ops.Set("shapeRewards", Napi::Function::New<CountedFunction<ShapeRewards>>(env, "shapeRewards"));
  ops.Set("add", Napi::Function::New<CountedFunction<Add>>(env, "add"));
  ops.Set("mul", Napi::Function::New<CountedFunction<Mul>>(env, "mul"));
  ops.Set("rowSum", Napi::Function::New<CountedFunction<RowSum>>(env, "rowSum"));
  ops.Set("broadcastRows", Napi::Function::New<CountedFunction<BroadcastRows>>(env, "broadcastRows"));
  ops.Set("ppoPolicyLoss", Napi::Function::New<CountedFunction<PpoPolicyLoss>>(env, "ppoPolicyLoss"));
  ops.Set("valueLoss", Napi::Function::New<CountedFunction<ValueLoss>>(env, "valueLoss"));
  ops.Set("selectRows", Napi::Function::New<CountedFunction<SelectRows>>(env, "selectRows"));
  ops.Set("concat", Napi::Function::New<CountedFunction<Concat>>(env, "concat"));
  ops.Set("total", Napi::Function::New<CountedFunction<Total>>(env, "total"));
  ops.Set("rowMoments", Napi::Function::New<CountedFunction<RowMoments>>(env, "rowMoments"));
  ops.Set("dpoLoss", Napi::Function::New<CountedFunction<DpoLoss>>(env, "dpoLoss"));
  ops.Set("rewardLoss", Napi::Function::New<CountedFunction<RewardLoss>>(env, "rewardLoss"));
  ops.Set("matmul", Napi::Function::New<CountedFunction<Matmul>>(env, "matmul"));
  exports.Set("ops", ops);
  return exports;
}

}  // namespace
}  // namespace rlfarm::binding

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return rlfarm::binding::Init(env, exports); }
NODE_API_MODULE(rlfarm, InitAddon)
