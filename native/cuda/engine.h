// The CUDA engine of a model: its parameters (fp32 master weights, and a bf16
// working copy in bf16 precision), gradients and AdamW moments each live in
// one contiguous device buffer laid out by the model's ParamLayout, as the CPU
// engine's do. Forward and backward run the transformer block written once in
// model/block_impl.h over CUDA layer ops (engine.cu); buffers are sized by
// plan_engine (plan.h). Tokens and masks come from the host; log-probs,
// entropies and values go back to it ([B, T] floats, never logits).
// Generation keeps its KV cache, logits and sampler on the device
// (plan_generate); per step only a 4-byte "all rows stopped" flag comes back,
// every 8 steps.
//
// Built only with the CUDA backend; without it make_engine says why (absent.cpp).
#pragma once

#include <memory>
#include <vector>

#include "../model/optimizer.h"
#include "../model/transformer.h"
#include "plan.h"

namespace rlfarm::cuda {

class Engine {
 public:
  virtual ~Engine() = default;
  virtual Precision precision() const = 0;
  virtual int device() const = 0;
  // The model's flat fp32 parameter buffer to and from the device.
  virtual void upload_params(const float* host) = 0;
  virtual void download_params(float* host) = 0;
  // The gradient buffer (zeros before the first backward).
  virtual void download_grads(float* host) = 0;
  // The gradient buffer itself on the device (allocated as zeros first), for
  // collectives that reduce it in place (the NCCL group).
  virtual float* device_grads() = 0;
  virtual void zero_grad() = 0;
  // As model::Transformer's, with the same checks and messages.
  virtual model::ForwardResult forward(const Tensor& tokens, const Tensor& mask, const model::ForwardOptions& o) = 0;
  // As model::Transformer's, with the same checks, messages and sampling rules
  // (model/sampling_math.h): prefill and decoding steps with a KV cache and
  // the sampler on the device; tokens, log-probs and lengths come back at the end.
  virtual model::GenerateResult generate(const Tensor& prompts, const Tensor& mask, const model::GenerateOptions& o) = 0;
  virtual void backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values) = 0;
  // clipped_adamw_step on the device, with `state`'s moments living on the
  // device between steps: its host copy is read when it changed there (or the
  // device held another optimizer's), and is not written back per step.
  virtual double adamw_step(const std::shared_ptr<model::AdamW>& state, int64_t step, double lr, double max_norm) = 0;
  // The device's moments into the host copy of the optimizer they belong to,
  // when they changed since it was written (a checkpoint, a move off the device).
  virtual void download_moments() = 0;
  virtual double grad_norm() = 0;
};

// An engine on cuda:`device` for `host`'s shape, holding a copy of its parameters.
std::unique_ptr<Engine> make_engine(const model::Transformer& host, int device, Precision precision);

}  // namespace rlfarm::cuda
