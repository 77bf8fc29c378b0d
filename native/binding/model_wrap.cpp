// The N-API face of model::Transformer. Heavy calls (forward, backward,
// generate, optimizer steps) run on libuv's pool as AsyncWorkers and resolve
// Promises; each worker holds references to the model object and to copies of
// its input tensors, so nothing it reads can be collected while it runs. One
// call at a time per model: a second one while the first runs is an error.
#include "model_wrap.h"

#include <exception>
#include <functional>
#include <memory>
#include <optional>

#include "../core/error.h"
#include "../core/cuda_runtime.h"
#include "../core/float_mode.h"
#include "../core/host_reads.h"
#include "../cuda/engine.h"
#include "../cuda/plan.h"
#include "../model/optimizer.h"
#include "../model/transformer.h"
#include "../model/weights.h"
#include "../distributed/overlap.h"
#include "../distributed/zero.h"
#include "distributed_wrap.h"
#include "loss_args.h"
#include "optimizer_wrap.h"
#include "tensor_wrap.h"

namespace rlfarm::binding {
namespace {

using model::ModelConfig;
using model::Transformer;

// Every field is required: the defaults live in one place, ts/model/config.ts,
// which fills them before a config reaches the engine.
Napi::Value required_field(const Napi::Object& o, const char* name) {
  const Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) fail("model config: ", name, " is required");
  return v;
}

int64_t int_field(const Napi::Object& o, const char* name) {
  const double d = number_arg(required_field(o, name), (std::string("model config: ") + name).c_str());
  RLF_CHECK(d == static_cast<double>(static_cast<int64_t>(d)), "model config: ", name, " must be an integer; got ", d);
  return static_cast<int64_t>(d);
}

float float_field(const Napi::Object& o, const char* name) {
  return static_cast<float>(number_arg(required_field(o, name), (std::string("model config: ") + name).c_str()));
}

bool bool_field(const Napi::Object& o, const char* name) {
  return bool_arg(required_field(o, name), (std::string("model config: ") + name).c_str());
}

ModelConfig config_from_js(const Napi::Value& value) {
  if (!value.IsObject()) fail("model config must be an object");
  const Napi::Object o = value.As<Napi::Object>();
  ModelConfig c;
  c.arch = model::arch_from_name(string_arg(required_field(o, "arch"), "model config: arch"));
  c.vocab = int_field(o, "vocab");
  c.dim = int_field(o, "dim");
  c.layers = int_field(o, "layers");
  c.heads = int_field(o, "heads");
  c.kv_heads = int_field(o, "kvHeads");
  c.head_dim = int_field(o, "headDim");
  c.hidden = int_field(o, "hidden");
  c.max_positions = int_field(o, "maxPositions");
  c.norm_eps = float_field(o, "normEps");
  c.rope_theta = float_field(o, "ropeTheta");
  c.rope_scaling = model::rope_scaling_from_name(string_arg(required_field(o, "ropeScaling"), "model config: ropeScaling"));
  c.rope_factor = float_field(o, "ropeFactor");
  c.rope_low_freq_factor = float_field(o, "ropeLowFreqFactor");
  c.rope_high_freq_factor = float_field(o, "ropeHighFreqFactor");
  c.rope_original_max_positions = int_field(o, "ropeOriginalMaxPositions");
  c.tie_embeddings = bool_field(o, "tieEmbeddings");
  c.qkv_bias = bool_field(o, "qkvBias");
  c.scalar_head = bool_field(o, "scalarHead");
  c.validate();
  return c;
}

const Tensor* optional_tensor(const Napi::Value& v, const char* what, Tensor& slot) {
  slot = NativeTensor::FromOptional(v, what);
  if (slot.defined()) check_usable(slot, what);
  return slot.defined() ? &slot : nullptr;
}

// Runs `work` off the event loop; `done` turns its results into the resolved value.
class ModelWork : public Napi::AsyncWorker {
 public:
  ModelWork(Napi::Env env, NativeModel* model, const Napi::Object& self, std::function<void()> work,
            std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "rlfarm.model"),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(model),
        self_(Napi::Persistent(self)),
        work_(std::move(work)),
        done_(std::move(done)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const FlushDenormals flush;  // this is a libuv thread: restored when the work is done
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    model_->SetBusy(nullptr);
    deferred_.Resolve(done_(Env()));
  }

  void OnError(const Napi::Error& error) override {
    model_->SetBusy(nullptr);
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  NativeModel* model_;
  Napi::ObjectReference self_;  // keeps the model alive while the work runs
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
};

}  // namespace

Napi::Function NativeModel::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::ParameterInfo>>("parameterInfo"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::Params>>("params"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::Grads>>("grads"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::DeviceGrads>>("deviceGrads"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::ZeroGrad>>("zeroGrad"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::InitRandom>>("initRandom"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::LoadParameter>>("loadParameter"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::ReadParameter>>("readParameter"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::Forward>>("forward"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::Backward>>("backward"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::ReduceGradients>>("reduceGradients"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::Generate>>("generate"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::AdamWStep>>("adamwStep"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::GradNorm>>("gradNorm"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::ToDevice>>("toDevice"),
                         InstanceMethod<&NativeModel::CountedMethod<&NativeModel::Placement>>("device"),
                     });
}

NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  count_native_call();  // `new NativeModel(config)` from JavaScript
  model_ = std::make_unique<Transformer>(config_from_js(info[0]));
}

NativeModel::~NativeModel() = default;

void NativeModel::CheckIdle(const char* op) const {
  if (busy_ != nullptr) fail(op, ": the model is busy with ", busy_, "; await it first (one call at a time per model)");
}

Napi::Value NativeModel::ParameterInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& params = model_->layout().params;
  Napi::Array out = Napi::Array::New(env, params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const model::ParamInfo& p = params[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", p.name);
    Napi::Array shape = Napi::Array::New(env, p.shape.size());
    for (size_t k = 0; k < p.shape.size(); ++k) shape.Set(static_cast<uint32_t>(k), static_cast<double>(p.shape[k]));
    o.Set("shape", shape);
    o.Set("offset", static_cast<double>(p.offset));
    o.Set("numel", static_cast<double>(p.numel));
    o.Set("decay", p.decay);
    o.Set("hfTransposed", p.hf_transposed);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

void NativeModel::SyncToDevice() {
  if (engine_ && host_dirty_) {
    engine_->upload_params(model_->params().data<float>());
    host_dirty_ = false;
  }
}

void NativeModel::SyncToHost() {
  if (!engine_) return;
  SyncToDevice();  // host writes not yet uploaded win, as they came last
  engine_->download_params(const_cast<float*>(model_->params().data<float>()));
}

// The parameters as a host view: on a cuda model, the host copy, brought up to
// date; writes to it reach the device before the next device call.
Napi::Value NativeModel::Params(const Napi::CallbackInfo& info) {
  SyncToHost();
  if (engine_) host_dirty_ = true;
  return NativeTensor::Wrap(info.Env(), model_->params());
}

// The gradients (on a cuda model, a host copy of the device's).
Napi::Value NativeModel::Grads(const Napi::CallbackInfo& info) {
  CheckIdle("model.gradients");
  if (engine_) engine_->download_grads(const_cast<float*>(model_->grads().data<float>()));
  return NativeTensor::Wrap(info.Env(), model_->grads());
}

namespace {
// Keeps a cuda model's engine, and so its gradient buffer, alive while a view of it is.
struct EngineOwner : StorageOwner {
  explicit EngineOwner(std::shared_ptr<cuda::Engine> e) : engine(std::move(e)) {}
  std::shared_ptr<cuda::Engine> engine;
};
}  // namespace

// The gradients of a cuda model as a tensor on its device (a view of the
// engine's buffer, not a copy), for collectives that reduce them in place.
Napi::Value NativeModel::DeviceGrads(const Napi::CallbackInfo& info) {
  CheckIdle("model.deviceGradients");
  RLF_CHECK(engine_, "model.deviceGradients: this model is on the cpu (its gradients are model.flatGradients())");
  auto storage = std::make_shared<Storage>();
  storage->device = Device::gpu(engine_->device());
  storage->data = engine_->device_grads();
  storage->bytes = sizeof(float) * model_->layout().total;
  storage->owner = std::make_shared<EngineOwner>(engine_);
  Tensor t;
  t.storage = storage;
  t.dtype = DType::f32;
  t.shape = {static_cast<int64_t>(model_->layout().total)};
  return NativeTensor::Wrap(info.Env(), t);
}

namespace {
// Zero gradients: the host buffer, and a cuda model's on its device.
void clear_gradients(Transformer& model, cuda::Engine* engine) {
  model.zero_grad();
  if (engine) engine->zero_grad();
}
}  // namespace

Napi::Value NativeModel::ZeroGrad(const Napi::CallbackInfo& info) {
  CheckIdle("model.zeroGrad");
  clear_gradients(*model_, engine_.get());
  return info.Env().Undefined();
}

Napi::Value NativeModel::InitRandom(const Napi::CallbackInfo& info) {
  CheckIdle("model.initRandom");
  model_->init_random(static_cast<uint64_t>(number_arg(info[0], "model.initRandom: seed")));
  host_dirty_ = engine_ != nullptr;
  return info.Env().Undefined();
}

// toDevice('cpu' | 'cuda' | 'cuda:N', precision 'f32' | 'bf16'): moves the
// parameters; gradients start again from zero on the new device.
Napi::Value NativeModel::ToDevice(const Napi::CallbackInfo& info) {
  CheckIdle("model.toDevice");
  const Device device = parse_device(string_arg(info[0], "model.toDevice: device"), "model.toDevice: device");
  const cuda::Precision precision =
      cuda::precision_from_name(string_arg(info[1], "model.toDevice: precision"), "model.toDevice");
  SyncToHost();
  if (engine_) engine_->download_moments();  // the next engine (or the cpu) steps from the host's copy
  if (device.is_cpu()) {
    engine_.reset();
  } else {
    RLF_CHECK(cuda::device_count() > 0, "model.toDevice: device '", device.name(), "' is not available: ",
              cuda::unavailable_reason());
    engine_ = cuda::make_engine(*model_, device.index, precision);
  }
  host_dirty_ = false;
  model_->zero_grad();
  return info.Env().Undefined();
}

// { device: 'cpu' | 'cuda:N', precision: 'f32' | 'bf16' }
Napi::Value NativeModel::Placement(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("device", engine_ ? Device::gpu(engine_->device()).name() : std::string("cpu"));
  out.Set("precision", engine_ ? cuda::precision_name(engine_->precision()) : "f32");
  return out;
}

// loadParameter(name, bytes: u8 tensor, dtype: 'F32'|'BF16'|'F16', shape, transpose)
Napi::Value NativeModel::LoadParameter(const Napi::CallbackInfo& info) {
  CheckIdle("model.loadParameter");
  const std::string name = string_arg(info[0], "loadParameter: name");
  const Tensor& bytes = NativeTensor::FromValue(info[1], "loadParameter: bytes");
  const std::string dtype = string_arg(info[2], "loadParameter: dtype");
  const Shape shape = shape_from_js(info[3], "loadParameter");
  const bool transpose = bool_arg(info[4], "loadParameter: transpose");
  if (engine_) SyncToHost();  // the other parameters stay as the device has them
  model::load_parameter(*model_, name, bytes, dtype, shape, transpose);
  host_dirty_ = engine_ != nullptr;
  return info.Env().Undefined();
}

// readParameter(name, transpose, fromGrads?) -> f32 tensor in Hugging Face's orientation
Napi::Value NativeModel::ReadParameter(const Napi::CallbackInfo& info) {
  const std::string name = string_arg(info[0], "readParameter: name");
  const bool transpose = bool_arg(info[1], "readParameter: transpose");
  const bool from_grads = info.Length() > 2 && bool_arg(info[2], "readParameter: fromGrads");
  if (engine_ && from_grads) engine_->download_grads(const_cast<float*>(model_->grads().data<float>()));
  else SyncToHost();
  return NativeTensor::Wrap(info.Env(), model::read_parameter(*model_, name, transpose, from_grads));
}

// forward(tokens, mask, { train, logprobs, entropy, temperature, logits, values })
namespace {
// What a forward's ppoLoss and valueLoss came to.
struct ForwardLosses {
  std::optional<ops::PpoPolicyLossResult> ppo;
  std::optional<ops::ValueLossResult> value;
};
}  // namespace

Napi::Value NativeModel::Forward(const Napi::CallbackInfo& info) {
  CheckIdle("model.forward");
  Napi::Env env = info.Env();
  Tensor tokens = NativeTensor::FromValue(info[0], "model.forward: tokens");
  check_usable(tokens, "model.forward: tokens");
  Tensor mask_slot;
  optional_tensor(info[1], "model.forward: attentionMask", mask_slot);
  const Napi::Object o = info[2].As<Napi::Object>();
  model::ForwardOptions options;
  options.train = bool_arg(o.Get("train"), "model.forward: train");
  options.logprobs = bool_arg(o.Get("logprobs"), "model.forward: logprobs");
  options.entropy = bool_arg(o.Get("entropy"), "model.forward: entropy");
  options.temperature = static_cast<float>(number_arg(o.Get("temperature"), "model.forward: temperature"));
  options.logits = bool_arg(o.Get("logits"), "model.forward: logits");
  options.values = bool_arg(o.Get("values"), "model.forward: values");
  options.action_values = bool_arg(o.Get("actionValues"), "model.forward: actionValues");
  options.on_device = bool_arg(o.Get("onDevice"), "model.forward: onDevice");
  options.op = string_arg(o.Get("op"), "model.forward: op");
  // The losses a training loop takes on these outputs, computed in this worker
  // (loss_args.h): no second call, and no loss kernel on the event loop.
  std::optional<PpoLossArgs> ppo;
  std::optional<ValueLossArgs> value;
  if (const Napi::Value v = o.Get("ppoLoss"); !v.IsUndefined()) {
    RLF_CHECK(v.IsArray() && options.logprobs, "model.forward: ppoLoss needs log-probs (logprobs: true)");
    const Napi::Array a = v.As<Napi::Array>();
    ppo = ppo_loss_args([&](uint32_t i) { return a.Get(i); }, "model.forward: ppoLoss.");
  }
  if (const Napi::Value v = o.Get("valueLoss"); !v.IsUndefined()) {
    RLF_CHECK(v.IsArray() && options.values, "model.forward: valueLoss needs values (values: true or 'actions')");
    const Napi::Array a = v.As<Napi::Array>();
    value = value_loss_args([&](uint32_t i) { return a.Get(i); }, "model.forward: valueLoss.");
  }
  auto result = std::make_shared<model::ForwardResult>();
  auto losses = std::make_shared<ForwardLosses>();
  Transformer* m = model_.get();
  SyncToDevice();
  cuda::Engine* engine = engine_.get();
  auto* work = new ModelWork(
      env, this, info.This().As<Napi::Object>(),
      [m, engine, tokens, mask_slot, options, result, ppo, value, losses] {
        *result = engine ? engine->forward(tokens, mask_slot, options) : m->forward(tokens, mask_slot, options);
        if (ppo) losses->ppo = ppo_policy_loss(result->logp, *ppo, options.entropy ? result->entropy : Tensor{});
        if (value) losses->value = value_loss(result->values, *value);
      },
      [result, losses, with_entropy = options.entropy, on_device = options.on_device](Napi::Env e) {
        // Outputs not kept on the model's device are reads back to the host
        // (on a cpu model too, which ignores onDevice: it counts what a GPU would copy).
        if (!on_device) {
          for (const Tensor* t : {&result->logp, &result->entropy, &result->logits, &result->values}) {
            if (t->defined()) count_host_read(t->nbytes());
          }
        }
        Napi::Object out = tensors_object(e, {{"logp", result->logp}, {"entropy", result->entropy},
                                              {"logits", result->logits}, {"values", result->values}});
        if (losses->ppo) out.Set("ppoLoss", ppo_loss_object(e, *losses->ppo, with_entropy));
        if (losses->value) out.Set("valueLoss", value_loss_object(e, *losses->value));
        return static_cast<Napi::Value>(out);
      });
  SetBusy("forward");
  work->Queue();
  return work->Promise();
}

namespace {

// Backward's gradients at the outputs, info[first .. first + 2]: gradLogp, gradEntropy, gradValues.
struct OutputGradients {
  Tensor logp, entropy, values;
  bool any() const { return logp.defined() || entropy.defined() || values.defined(); }
};

OutputGradients output_gradients(const Napi::CallbackInfo& info, size_t first) {
  OutputGradients out;
  optional_tensor(info[first], "model.backward: gradLogp", out.logp);
  optional_tensor(info[first + 1], "model.backward: gradEntropy", out.entropy);
  optional_tensor(info[first + 2], "model.backward: gradValues", out.values);
  return out;
}

}  // namespace

Napi::Value NativeModel::Backward(const Napi::CallbackInfo& info) {
  CheckIdle("model.backward");
  const OutputGradients o = output_gradients(info, 0);
  RLF_CHECK(o.any(), "model.backward: give gradLogp, gradEntropy or gradValues");
  Transformer* m = model_.get();
  cuda::Engine* engine = engine_.get();
  auto* work = new ModelWork(
      info.Env(), this, info.This().As<Napi::Object>(),
      [m, engine, o] { engine ? engine->backward(o.logp, o.entropy, o.values) : m->backward(o.logp, o.entropy, o.values); },
      [](Napi::Env env) { return env.Undefined(); });
  SetBusy("backward");
  work->Queue();
  return work->Promise();
}

// reduceGradients(group, bucketBytes, gradLogp?, gradEntropy?, gradValues?)
// -> Promise<{ reduceMs, waitMs, buckets }>: backward (when a gradient is
// given; a rank with no rows gives none) with the gradient buffer summed over
// the group in buckets of about bucketBytes, each as soon as backward has made
// it final (distributed/overlap.h). Takes its turn among the group's collectives now.
Napi::Value NativeModel::ReduceGradients(const Napi::CallbackInfo& info) {
  CheckIdle("model.backward");
  RLF_CHECK(!engine_, "model.backward: the gradient all-reduce overlapped with backward takes a cpu model; this one is on ",
            Device::gpu(engine_ ? engine_->device() : 0).name());
  const double bytes = number_arg(info[1], "model.backward: bucketBytes");
  RLF_CHECK(bytes >= 0 && bytes <= 1e15 && bytes == static_cast<double>(static_cast<int64_t>(bytes)),
            "model.backward: bucketBytes must be a whole number of bytes >= 0; got ", bytes);
  const OutputGradients o = output_gradients(info, 2);
  Transformer* m = model_.get();
  const Tensor grads = m->grads();  // allocated on this thread
  auto reduce = std::make_shared<distributed::OverlappedAllReduce>(
      grads, distributed::plan_buckets(model::gradient_regions_in_backward_order(m->layout()),
                                       static_cast<int64_t>(bytes) / static_cast<int64_t>(sizeof(float))));
  std::shared_ptr<GroupTurn> turn = TakeGroupTurn(info[0], "model.backward");
  auto times = std::make_shared<distributed::OverlapTimes>();
  auto* work = new ModelWork(
      info.Env(), this, info.This().As<Napi::Object>(),
      [m, o, reduce, turn, times] {
        reduce->start([turn](const std::function<void(distributed::ProcessGroup&)>& run) { turn->Run("allReduce", run); });
        std::exception_ptr failed;
        if (o.any()) {
          try {
            m->backward(o.logp, o.entropy, o.values, [&](const model::FlatRange& r) { reduce->mark_final(r); });
          } catch (...) {
            failed = std::current_exception();
          }
        }
        // Even after backward failed, every bucket is reduced, so the ranks still make the same collectives.
        try {
          *times = reduce->finish();
        } catch (...) {
          if (!failed) failed = std::current_exception();
        }
        if (failed) std::rethrow_exception(failed);
      },
      [times](Napi::Env env) {
        Napi::Object out = Napi::Object::New(env);
        out.Set("reduceMs", times->reduce_ms);
        out.Set("waitMs", times->wait_ms);
        out.Set("buckets", times->buckets);
        return static_cast<Napi::Value>(out);
      });
  SetBusy("backward");
  work->Queue();
  return work->Promise();
}

// generate(prompts, mask, { maxNewTokens, temperature, topK, topP, stopTokens, padToken, seeds })
Napi::Value NativeModel::Generate(const Napi::CallbackInfo& info) {
  CheckIdle("model.generate");
  Tensor prompts = NativeTensor::FromValue(info[0], "model.generate: prompts");
  check_usable(prompts, "model.generate: prompts");
  Tensor mask_slot;
  optional_tensor(info[1], "model.generate: attentionMask", mask_slot);
  const Napi::Object o = info[2].As<Napi::Object>();
  model::GenerateOptions options;
  options.max_new_tokens = static_cast<int64_t>(number_arg(o.Get("maxNewTokens"), "model.generate: maxNewTokens"));
  options.temperature = static_cast<float>(number_arg(o.Get("temperature"), "model.generate: temperature"));
  options.top_k = static_cast<int64_t>(number_arg(o.Get("topK"), "model.generate: topK"));
  options.top_p = static_cast<float>(number_arg(o.Get("topP"), "model.generate: topP"));
  options.pad_token = static_cast<int32_t>(number_arg(o.Get("padToken"), "model.generate: padToken"));
  const Napi::Array stops = o.Get("stopTokens").As<Napi::Array>();
  for (uint32_t i = 0; i < stops.Length(); ++i) {
    options.stop_tokens.push_back(static_cast<int32_t>(number_arg(stops.Get(i), "model.generate: stopTokens")));
  }
  const Napi::Array seeds = o.Get("seeds").As<Napi::Array>();
  for (uint32_t i = 0; i < seeds.Length(); ++i) {
    options.seeds.push_back(static_cast<uint64_t>(number_arg(seeds.Get(i), "model.generate: seeds")));
  }
  auto result = std::make_shared<model::GenerateResult>();
  // A cuda model generates on its device, from the weights there.
  SyncToDevice();
  Transformer* m = model_.get();
  cuda::Engine* engine = engine_.get();
  auto* work = new ModelWork(
      info.Env(), this, info.This().As<Napi::Object>(),
      [m, engine, prompts, mask_slot, options, result] {
        *result = engine ? engine->generate(prompts, mask_slot, options) : m->generate(prompts, mask_slot, options);
      },
      [result](Napi::Env e) {
        // What the sampler made on the device comes back to the host (the masks are built there from it).
        for (const Tensor* t : {&result->tokens, &result->logprobs, &result->lengths}) count_host_read(t->nbytes());
        return static_cast<Napi::Value>(tensors_object(
            e, {{"tokens", result->tokens}, {"logprobs", result->logprobs}, {"lengths", result->lengths},
                {"attentionMask", result->attention_mask}, {"actionMask", result->action_mask},
                {"lastMask", result->last_mask}}));
      });
  SetBusy("generate");
  work->Queue();
  return work->Promise();
}

// adamwStep(optimizer, step, lr, maxGradNorm, zeroGrad) -> Promise<gradient norm before clipping>.
// A sharded optimizer (ZeRO-1) takes its turn among its group's collectives now.
// zeroGrad clears the gradients after the update, in the same worker: a
// training loop needs no separate call (and no memset on the event loop).
Napi::Value NativeModel::AdamWStep(const Napi::CallbackInfo& info) {
  CheckIdle("optimizer.step");
  const NativeAdamW& optimizer = NativeAdamW::FromValue(info[0], "optimizer.step");
  RLF_CHECK(optimizer.owner() == model_.get(), "optimizer.step: this optimizer was made for another model");
  const int64_t step = static_cast<int64_t>(number_arg(info[1], "optimizer.step: step"));
  const double lr = number_arg(info[2], "optimizer.step: lr");
  const double max_norm = number_arg(info[3], "optimizer.step: maxGradNorm");
  const bool zero_grad = bool_arg(info[4], "optimizer.step: zeroGrad");
  RLF_CHECK(step >= 1, "optimizer.step: step counts from 1; got ", step);
  const std::shared_ptr<model::AdamW> state = optimizer.state();
  const Napi::Value group = optimizer.Group(info.Env());
  RLF_CHECK(!(engine_ && !group.IsUndefined()), "optimizer.step: ZeRO-1 (distributed.shard_optimizer) takes a cpu model; this one is on ",
            Device::gpu(engine_ ? engine_->device() : 0).name(), " (the Gloo group moves host tensors)");
  Transformer* model = model_.get();
  model->grads();  // allocate on this thread
  state->m();  // and the moments
  SyncToDevice();
  cuda::Engine* engine = engine_.get();
  auto norm = std::make_shared<double>(0.0);
  std::shared_ptr<GroupTurn> turn;
  if (!group.IsUndefined()) turn = TakeGroupTurn(group, "optimizer.step");
  auto* work = new ModelWork(
      info.Env(), this, info.This().As<Napi::Object>(),
      [model, engine, state, step, lr, max_norm, zero_grad, turn, norm] {
        float* params = const_cast<float*>(model->params().data<float>());
        float* grads = const_cast<float*>(model->grads().data<float>());
        if (turn) {
          turn->Run("optimizer.step", [&](distributed::ProcessGroup& g) {
            *norm = distributed::sharded_adamw_step(g, params, grads, *state, step, lr, max_norm, g.default_timeout());
          });
        } else if (engine) {
          *norm = engine->adamw_step(state, step, lr, max_norm);
        } else {
          *norm = state->step(params, grads, step, lr, max_norm);
        }
        if (zero_grad) clear_gradients(*model, engine);
      },
      [norm](Napi::Env e) {
        count_host_read(sizeof(*norm));
        return static_cast<Napi::Value>(Napi::Number::New(e, *norm));
      });
  SetBusy("an optimizer step");
  work->Queue();
  return work->Promise();
}

void NativeModel::SyncMomentsToHost(const char* op) {
  CheckIdle(op);
  if (engine_) engine_->download_moments();
}

Napi::Value NativeModel::GradNorm(const Napi::CallbackInfo& info) {
  CheckIdle("model.gradNorm");
  count_host_read(sizeof(double));
  if (engine_) return Napi::Number::New(info.Env(), engine_->grad_norm());
  return Napi::Number::New(info.Env(), model::gradient_norm(model_->grads().data<float>(),
                                                            static_cast<int64_t>(model_->layout().total)));
}

namespace {

int64_t integer_arg(const Napi::Value& value, const char* what) {
  const double d = number_arg(value, what);
  RLF_CHECK(d == static_cast<double>(static_cast<int64_t>(d)), what, " must be an integer; got ", d);
  return static_cast<int64_t>(d);
}

Napi::Object launch_to_js(Napi::Env env, const cuda::Launch& l) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array grid = Napi::Array::New(env, 3);
  grid.Set(0u, static_cast<double>(l.grid_x));
  grid.Set(1u, static_cast<double>(l.grid_y));
  grid.Set(2u, static_cast<double>(l.grid_z));
  o.Set("grid", grid);
  o.Set("block", l.block);
  o.Set("smemBytes", static_cast<double>(l.smem_bytes));
  return o;
}

}  // namespace

// cublasltPlan(transA, transB, m, n, k, lda, ldb, ldc): cuBLASLt's column-major
// view of a row-major product (plan_cublaslt), for the tests.
Napi::Value CublasltPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t v[6];
  const char* names[6] = {"cublasltPlan: m", "cublasltPlan: n", "cublasltPlan: k", "cublasltPlan: lda", "cublasltPlan: ldb",
                          "cublasltPlan: ldc"};
  for (int i = 0; i < 6; ++i) {
    const double d = number_arg(info[2 + i], names[i]);
    RLF_CHECK(d >= 1 && d == static_cast<double>(static_cast<int64_t>(d)), names[i], " must be an integer >= 1; got ", d);
    v[i] = static_cast<int64_t>(d);
  }
  const cuda::LtGemm p = cuda::plan_cublaslt(bool_arg(info[0], "cublasltPlan: transA"),
                                             bool_arg(info[1], "cublasltPlan: transB"), v[0], v[1], v[2], v[3], v[4], v[5]);
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, m] : {std::pair{"a", p.a}, std::pair{"b", p.b}, std::pair{"c", p.c}}) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("rows", static_cast<double>(m.rows));
    o.Set("cols", static_cast<double>(m.cols));
    o.Set("ld", static_cast<double>(m.ld));
    o.Set("transposed", m.transposed);
    out.Set(name, o);
  }
  return out;
}

// cudaPlan(config, batch, steps, precision, train, sms): what the CUDA engine
// launches and allocates for that step (pure host code; runs without a GPU).
Napi::Value CudaPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ModelConfig config = config_from_js(info[0]);
  const auto integer = [&](size_t i, const char* what) { return integer_arg(info[i], what); };
  const int64_t batch = integer(1, "cudaPlan: batch"), steps = integer(2, "cudaPlan: steps");
  const cuda::Precision precision = cuda::precision_from_name(string_arg(info[3], "cudaPlan: precision"), "cudaPlan");
  const bool train = bool_arg(info[4], "cudaPlan: train");
  const int64_t sms = integer(5, "cudaPlan: sms");
  RLF_CHECK(sms > 0 && sms <= 1024, "cudaPlan: sms must be in [1, 1024]; got ", sms);
  const cuda::EnginePlan p = cuda::plan_engine(config, batch, steps, precision, train, static_cast<int>(sms));
  Napi::Object out = Napi::Object::New(env);
  out.Set("rows", static_cast<double>(p.rows));
  out.Set("precision", cuda::precision_name(p.precision));
  out.Set("headChunkRows", static_cast<double>(p.head_chunk_rows));
  Napi::Array gemms = Napi::Array::New(env, p.gemms.size());
  for (size_t i = 0; i < p.gemms.size(); ++i) {
    const cuda::GemmPlan& g = p.gemms[i].plan;
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", p.gemms[i].name);
    o.Set("m", static_cast<double>(g.m));
    o.Set("n", static_cast<double>(g.n));
    o.Set("k", static_cast<double>(g.k));
    o.Set("batch", static_cast<double>(g.batch));
    Napi::Array tile = Napi::Array::New(env, 3);
    tile.Set(0u, g.tiling.tile_m);
    tile.Set(1u, g.tiling.tile_n);
    tile.Set(2u, g.tiling.tile_k);
    o.Set("tile", tile);
    o.Set("warps", g.tiling.warps);
    o.Set("tensorCores", g.tiling.tensor_cores);
    o.Set("launch", launch_to_js(env, g.launch));
    o.Set("waves", g.waves);
    gemms.Set(static_cast<uint32_t>(i), o);
  }
  out.Set("gemms", gemms);
  Napi::Object launches = Napi::Object::New(env);
  for (const auto& [name, l] : {std::pair{"norm", p.norm}, std::pair{"embed", p.embed},
                                std::pair{"elementwise", p.elementwise}, std::pair{"attentionSoftmax", p.attention_softmax},
                                std::pair{"attentionDecode", p.attention_decode}, std::pair{"classifier", p.classifier},
                                std::pair{"adamw", p.adamw}, std::pair{"attentionFlash", p.attention_flash.launch}}) {
    launches.Set(name, launch_to_js(env, l));
  }
  Napi::Object flash = Napi::Object::New(env);
  flash.Set("headDimTile", p.attention_flash.head_dim_tile);
  flash.Set("keyTile", p.attention_flash.key_tile);
  out.Set("flash", flash);
  Napi::Object flash_backward = Napi::Object::New(env);
  flash_backward.Set("headDimTile", p.attention_flash_backward.head_dim_tile);
  flash_backward.Set("tile", p.attention_flash_backward.tile);
  flash_backward.Set("dq", launch_to_js(env, p.attention_flash_backward.dq));
  flash_backward.Set("dkv", launch_to_js(env, p.attention_flash_backward.dkv));
  out.Set("flashBackward", flash_backward);
  Napi::Object column_sums = Napi::Object::New(env);
  column_sums.Set("chunkRows", static_cast<double>(p.column_sums.chunk_rows));
  column_sums.Set("chunks", static_cast<double>(p.column_sums.chunks));
  column_sums.Set("partials", launch_to_js(env, p.column_sums.partials));
  column_sums.Set("finish", launch_to_js(env, p.column_sums.finish));
  column_sums.Set("scratchFloats", static_cast<double>(p.column_sums.scratch_floats));
  out.Set("columnSums", column_sums);
  Napi::Object embed_backward = Napi::Object::New(env);
  embed_backward.Set("idBits", p.embed_backward.id_bits);
  embed_backward.Set("runs", launch_to_js(env, p.embed_backward.runs));
  embed_backward.Set("scratchBytes", static_cast<double>(p.embed_backward.scratch_bytes));
  out.Set("embedBackward", embed_backward);
  out.Set("launches", launches);
  const cuda::MemoryPlan& m = p.memory;
  Napi::Object mem = Napi::Object::New(env);
  for (const auto& [name, v] : {std::pair{"params", m.params}, std::pair{"working", m.working}, std::pair{"grads", m.grads},
                                std::pair{"adamM", m.adam_m}, std::pair{"adamV", m.adam_v},
                                std::pair{"activations", m.activations}, std::pair{"scratch", m.scratch},
                                std::pair{"head", m.head}, std::pair{"attention", m.attention},
                                std::pair{"total", m.total()}}) {
    mem.Set(name, static_cast<double>(v));
  }
  out.Set("memory", mem);
  return out;
}

// cudaGeneratePlan(config, batch, prompt, newTokens, truncate): what the CUDA
// engine's generate() launches and allocates (pure host code), for the tests.
Napi::Value CudaGeneratePlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ModelConfig config = config_from_js(info[0]);
  const auto integer = [&](size_t i, const char* what) { return integer_arg(info[i], what); };
  const cuda::GeneratePlan p =
      cuda::plan_generate(config, integer(1, "cudaGeneratePlan: batch"), integer(2, "cudaGeneratePlan: prompt"),
                          integer(3, "cudaGeneratePlan: newTokens"), bool_arg(info[4], "cudaGeneratePlan: truncate"));
  Napi::Object out = Napi::Object::New(env);
  out.Set("slots", static_cast<double>(p.slots));
  out.Set("kvCacheBytes", static_cast<double>(p.kv_cache_bytes));
  out.Set("prefillBytes", static_cast<double>(p.prefill_bytes));
  out.Set("stepBytes", static_cast<double>(p.step_bytes));
  out.Set("totalBytes", static_cast<double>(p.total()));
  Napi::Object prefill = launch_to_js(env, p.prefill_attention.launch);
  prefill.Set("headDimTile", p.prefill_attention.head_dim_tile);
  prefill.Set("keyTile", p.prefill_attention.key_tile);
  out.Set("prefillAttention", prefill);
  Napi::Object decode = launch_to_js(env, p.decode_attention.launch);
  decode.Set("supported", p.decode_attention.supported);
  out.Set("decodeAttention", decode);
  Napi::Object sampling = launch_to_js(env, p.sampling.launch);
  sampling.Set("sortWidth", static_cast<double>(p.sampling.sort_width));
  sampling.Set("scratchBytes", static_cast<double>(p.sampling.scratch_bytes));
  out.Set("sampling", sampling);
  return out;
}

}  // namespace rlfarm::binding
