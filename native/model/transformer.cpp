#include "transformer.h"
#include "transformer_impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <new>
#include <numeric>
#include <random>
#include <sstream>

#include "../core/error.h"
#include "../core/huge_pages.h"
#include "../ops/kernels.h"
#include "../core/thread_pool.h"
#include "../cpu/gemm.h"
#include "sampling.h"

namespace rlfarm::model {

using cpu::sgemm;

void Transformer::SavedDeleter::operator()(Saved* s) const { delete s; }

Transformer::Transformer(const ModelConfig& config)
    : config_(config), layout_(make_layout(config)), rope_(config) {
  params_ = zeros({static_cast<int64_t>(layout_.total)}, DType::f32, Device::host());
}

const Tensor& Transformer::grads() {
  if (!grads_.defined()) grads_ = zeros({static_cast<int64_t>(layout_.total)}, DType::f32, Device::host());
  return grads_;
}

void Transformer::zero_grad() {
  if (grads_.defined()) std::memset(grads_.raw(), 0, grads_.nbytes());
}

void Transformer::init_random(uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  float* p = params_.data<float>();
  const float residual_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(config_.layers));
  for (const ParamInfo& info : layout_.params) {
    float* w = p + info.offset;
    const bool is_norm = info.name.find("norm") != std::string::npos || info.name.find("ln_") != std::string::npos;
    const bool is_bias = info.name.size() > 5 && info.name.compare(info.name.size() - 5, 5, ".bias") == 0;
    if (is_bias) {
      std::fill(w, w + info.numel, 0.0f);
    } else if (is_norm) {
      std::fill(w, w + info.numel, 1.0f);
    } else {
      const bool output_proj = info.name.find("c_proj") != std::string::npos ||
                               info.name.find("o_proj") != std::string::npos ||
                               info.name.find("down_proj") != std::string::npos;
      for (size_t i = 0; i < info.numel; ++i) w[i] = normal(gen) * (output_proj ? residual_scale : 1.0f);
    }
  }
}

void Transformer::check_tokens(const Tensor& tokens, const Tensor& mask, const char* op) const {
  RLF_CHECK(tokens.defined(), op, ": tokens are required");
  check_usable(tokens, op);
  RLF_CHECK(tokens.device().is_cpu(), op, ": tokens must be on the cpu (the model is); got ", tokens.describe());
  RLF_CHECK(tokens.dtype == DType::i32 && tokens.ndim() == 2, op, ": tokens must be an i32 tensor [B, T]; got ",
            tokens.describe());
  RLF_CHECK(tokens.shape[0] > 0 && tokens.shape[1] > 0, op, ": tokens is empty (", tokens.describe(), ")");
  const int32_t* t = tokens.data<int32_t>();
  for (int64_t i = 0, n = tokens.numel(); i < n; ++i) {
    if (t[i] < 0 || t[i] >= config_.vocab) {
      fail(op, ": tokens[", i / tokens.shape[1], "][", i % tokens.shape[1], "] = ", t[i], " is outside the vocabulary [0, ",
           config_.vocab, ")");
    }
  }
  if (mask.defined()) {
    check_usable(mask, op);
    RLF_CHECK(mask.device().is_cpu() && (mask.dtype == DType::u8 || mask.dtype == DType::i32 || mask.dtype == DType::f32),
              op, ": attentionMask must be a cpu u8, i32 or f32 tensor; got ", mask.describe());
    RLF_CHECK(mask.shape == tokens.shape, op, ": attentionMask must have the shape of tokens, ", shape_str(tokens.shape),
              "; got ", shape_str(mask.shape));
    check_mask_values(mask, op);
  }
}

// Every value 0 or 1 and every row attending to a token (a row with none has no
// softmax to take). Here rather than in JavaScript, so that a training loop's
// forward reads no per-token data back into JavaScript.
void Transformer::check_mask_values(const Tensor& mask, const char* op) {
  const int64_t B = mask.shape[0], T = mask.shape[1];
  for (int64_t b = 0; b < B; ++b) {
    bool any = false;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      const double v = mask.dtype == DType::u8    ? mask.data<uint8_t>()[i]
                       : mask.dtype == DType::i32 ? mask.data<int32_t>()[i]
                                                  : mask.data<float>()[i];
      if (v != 0 && v != 1) {
        // Written as JavaScript writes the number the caller put there.
        std::ostringstream shown;
        if (std::isnan(v)) shown << "NaN";
        else if (std::isinf(v)) shown << (v > 0 ? "Infinity" : "-Infinity");
        else shown << std::setprecision(17) << v;
        fail(op, ": attentionMask[", b, "][", t, "] = ", shown.str(), "; a mask holds 1 (a real token) or 0 (padding)");
      }
      any = any || v == 1;
    }
    RLF_CHECK(any, op, ": attentionMask row ", b, " is all 0: the row has no real token to attend to");
  }
}

void Transformer::check_forward(const Tensor& tokens, const Tensor& mask, const ForwardOptions& o) const {
  check_tokens(tokens, mask, o.op.c_str());
  RLF_CHECK(std::isfinite(o.temperature) && o.temperature > 0, o.op, ": temperature must be > 0; got ",
            o.temperature);
  RLF_CHECK(!o.values || layout_.score != kNone,
            o.op, ": values need a scalar head; load or create the model with scalarHead: true");
  RLF_CHECK(!o.action_values || o.values, o.op, ": action values are values: ask for values too");
  RLF_CHECK(!o.action_values || tokens.shape[1] >= 2,
            o.op, ": values at log-prob positions need sequences of at least 2 tokens; got ", tokens.shape[1]);
}

// Row b's first `width` values of `from` (rows of from_stride) into row b of `to` (rows of to_stride).
static void copy_rows(const Tensor& from, int64_t from_stride, const Tensor& to, int64_t to_stride, int64_t rows,
                      int64_t width) {
  for (int64_t b = 0; b < rows; ++b) copy_into(view(to, b * to_stride, {width}), view(from, b * from_stride, {width}));
}

Tensor values_on_action_grid(const Tensor& values) {
  const int64_t B = values.shape[0], T = values.shape[1];
  Tensor out = empty({B, T - 1}, DType::f32, values.device());
  copy_rows(values, T, out, T - 1, B, T - 1);
  return out;
}

Tensor grad_from_action_grid(const Tensor& grad, int64_t steps) {
  const int64_t B = grad.shape[0];
  Tensor out = zeros({B, steps}, DType::f32, grad.device());
  copy_rows(grad, steps - 1, out, steps, B, steps - 1);
  return out;
}

void Transformer::check_backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values,
                                 int64_t batch, int64_t steps, bool entropy_kept, bool action_values, int device) const {
  const Shape target_shape{batch, steps - 1};
  for (const auto& [g, name, shape] : {std::tuple{&grad_logp, "gradLogp", target_shape},
                                       std::tuple{&grad_entropy, "gradEntropy", target_shape},
                                       std::tuple{&grad_values, "gradValues", Shape{batch, action_values ? steps - 1 : steps}}}) {
    if (!g->defined()) continue;
    check_usable(*g, "model.backward");
    if (device >= 0) {
      const bool placed = g->device().is_cpu() || (g->device().is_cuda() && g->device().index == device);
      RLF_CHECK(g->dtype == DType::f32 && placed && g->shape == shape, "model.backward: ", name, " must be an f32 tensor ",
                shape_str(shape), " (the forward's batch) on the cpu or cuda:", device, "; got ", g->describe());
      continue;
    }
    RLF_CHECK(g->dtype == DType::f32 && g->device().is_cpu() && g->shape == shape, "model.backward: ", name,
              " must be a cpu f32 tensor ", shape_str(shape), " (the forward's batch); got ", g->describe());
  }
  RLF_CHECK(!grad_entropy.defined() || entropy_kept, "model.backward: gradEntropy needs a forward with entropy: true");
  RLF_CHECK(!grad_values.defined() || layout_.score != kNone, "model.backward: gradValues needs a scalar head");
}

void check_positions(const ModelConfig& c, const std::vector<int32_t>& positions, const char* op) {
  if (c.arch != Arch::gpt2) return;
  const int32_t longest = *std::max_element(positions.begin(), positions.end());
  RLF_CHECK(longest < c.max_positions, op, ": position ", longest, " is past GPT-2's n_positions (", c.max_positions,
            "); use sequences of at most ", c.max_positions, " tokens");
}

namespace {

bool mask_at(const Tensor& mask, int64_t i) {
  switch (mask.dtype) {
    case DType::u8: return mask.data<uint8_t>()[i] != 0;
    case DType::i32: return mask.data<int32_t>()[i] != 0;
    default: return mask.data<float>()[i] != 0.0f;
  }
}

}  // namespace

void positions_from_mask(const Tensor& mask, int64_t batch, int64_t steps, std::vector<int32_t>& positions,
                         std::vector<uint8_t>& valid) {
  positions.resize(static_cast<size_t>(batch * steps));
  valid.resize(static_cast<size_t>(batch * steps));
  for (int64_t b = 0; b < batch; ++b) {
    int32_t seen = 0;
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t i = b * steps + t;
      const bool on = !mask.defined() || mask_at(mask, i);
      seen += on ? 1 : 0;
      valid[i] = on ? 1 : 0;
      positions[i] = std::max(seen - 1, 0);
    }
  }
}


void Transformer::layer_forward(int64_t l, const LayerStep& st, const LayerBuffers& b) {
  BlockStep step{st.batch, st.queries, st.positions, st.key_valid, nullptr, nullptr, 0, st.query_slot, st.read_cache};
  if (st.cache != nullptr) {  // this layer's slice of the cache
    const int64_t kv = config_.kv_dim();
    step.slots = st.cache->slots;
    step.cache_k = st.cache->k.data() + l * st.batch * step.slots * kv;
    step.cache_v = st.cache->v.data() + l * st.batch * step.slots * kv;
  }
  CpuOps ops{config_, rope_};
  block_forward(ops, config_, layout_.layers[l], params_.data<float>(), step, b);
}

void Transformer::run_layers(Saved& s, KvCache* cache) {
  const ModelConfig& c = config_;
  const int64_t N = s.rows, d = c.dim, qkv_dim = c.qkv_dim(), up_width = c.arch == Arch::gpt2 ? c.hidden : 2 * c.hidden;
  const float* P = params_.data<float>();
  const auto opt = [&](size_t offset) { return offset == kNone ? nullptr : P + offset; };

  float* x0 = s.x.data();
  embed(s.tokens.data(), s.positions.data(), P + layout_.token_embedding, opt(layout_.position_embedding), x0, N, d);
  if (c.arch != Arch::gpt2) rope_.ensure(*std::max_element(s.positions.begin(), s.positions.end()) + 1);

  const LayerStep step{s.batch, s.steps, s.positions.data(), s.masked ? s.key_valid.data() : nullptr, cache, nullptr,
                       false};
  for (int64_t l = 0; l < c.layers; ++l) {
    LayerBuffers b;
    b.x_in = s.x.data() + s.x_slot(2 * l) * N * d;
    b.x_mid = s.x.data() + s.x_slot(2 * l + 1) * N * d;
    b.x_out = s.x.data() + s.x_slot(2 * l + 2) * N * d;
    b.stats1 = s.stats.data() + s.x_slot(2 * l) * 2 * N;
    b.stats2 = s.stats.data() + s.x_slot(2 * l + 1) * 2 * N;
    b.normed = s.normed.data();
    b.qkv = s.qkv.data() + s.layer_slot(l) * N * qkv_dim;
    b.lse = s.lse.data() + s.layer_slot(l) * s.batch * c.heads * s.steps;
    b.att = s.att.data() + s.layer_slot(l) * N * c.q_dim();
    b.pre = s.pre.data() + s.layer_slot(l) * N * up_width;
    b.act = s.act.data() + s.layer_slot(l) * N * c.hidden;  // kept for backward when training
    layer_forward(l, step, b);
  }
  const float* x_final = s.x.data() + s.x_slot(2 * c.layers) * N * d;
  float* stats_f = s.stats.data() + s.x_slot(2 * c.layers) * 2 * N;
  norm_forward(x_final, P + layout_.final_norm_w, opt(layout_.final_norm_b), s.final_normed.data(), stats_f, N, d,
               c.norm_eps);
}

namespace {

// The LM head works on target rows: row (b, t), t < T - 1, reads the hidden
// state at (b, t) and predicts token (b, t + 1). It takes them a chunk at a
// time (about 32 MB of logits), so the [B, T, V] logits never exist at once.
class HeadChunks {
 public:
  // hidden and logits are the caller's buffers, grown here as needed.
  HeadChunks(const Buffer& hidden_states, const std::vector<int32_t>& tokens, int64_t batch, int64_t steps,
             int64_t dim, int64_t vocab, Buffer& hidden_buffer, Buffer& logits_buffer)
      : hidden(hidden_buffer), logits(logits_buffer), states_(hidden_states), tokens_(tokens), steps_(steps),
        dim_(dim), vocab_(vocab) {
    total_ = batch * (steps - 1);
    chunk_ = std::max<int64_t>(1, (int64_t(8) << 20) / vocab);
    const size_t most = static_cast<size_t>(std::min(chunk_, std::max<int64_t>(total_, 1)));
    reserve(hidden, most * dim, "the LM head's hidden states");
    reserve(logits, most * vocab, "the LM head's logits");
    next.resize(most);
  }

  int64_t total() const { return total_; }
  int64_t chunk() const { return chunk_; }
  // Row of the hidden states (b * T + t) that target row i reads.
  int64_t source(int64_t i) const { return (i / (steps_ - 1)) * steps_ + i % (steps_ - 1); }

  // Gathers target rows [start, start + rows) and computes their logits with W [V, dim].
  void load(int64_t start, int64_t rows, const float* W) {
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t src = source(start + i);
      std::memcpy(hidden.data() + i * dim_, states_.data() + src * dim_, sizeof(float) * dim_);
      next[i] = tokens_[src + 1];
    }
    linear(hidden.data(), rows, dim_, W, vocab_, logits.data(), vocab_, false);
  }

  Buffer &hidden, &logits;
  std::vector<int32_t> next;

 private:
  const Buffer& states_;
  const std::vector<int32_t>& tokens_;
  int64_t steps_, dim_, vocab_, total_, chunk_;
};

}  // namespace

void Transformer::head_logprobs(Saved& s, const ForwardOptions& o, ForwardResult& r) {
  r.logp = empty({s.batch, s.steps - 1}, DType::f32, Device::host());
  if (o.entropy) r.entropy = empty({s.batch, s.steps - 1}, DType::f32, Device::host());
  HeadChunks head(s.final_normed, s.tokens, s.batch, s.steps, config_.dim, config_.vocab, s.head_hidden, s.head_logits);
  for (int64_t start = 0; start < head.total(); start += head.chunk()) {
    const int64_t rows = std::min(head.chunk(), head.total() - start);
    head.load(start, rows, params_.data<float>() + layout_.lm_head);
    LogprobsArgs a{head.logits.data(), DType::f32, head.next.data(), rows, config_.vocab, 1.0f / o.temperature,
                   r.logp.data<float>() + start, o.entropy ? r.entropy.data<float>() + start : nullptr, nullptr};
    cpu::logprobs(a);
  }
}

ForwardResult Transformer::forward(const Tensor& tokens, const Tensor& mask, const ForwardOptions& o) {
  check_forward(tokens, mask, o);
  const ModelConfig& c = config_;
  if (!saved_) saved_.reset(new Saved());
  Saved& s = *saved_;
  s.batch = tokens.shape[0];
  s.steps = tokens.shape[1];
  s.rows = s.batch * s.steps;
  s.train = o.train;
  s.temperature = o.temperature;
  s.entropy = o.entropy;
  s.action_values = o.action_values;
  s.tokens.assign(tokens.data<int32_t>(), tokens.data<int32_t>() + s.rows);
  positions_from_mask(mask, s.batch, s.steps, s.positions, s.key_valid);
  s.masked = mask.defined();
  check_positions(c, s.positions, "model.forward");
  const int64_t N = s.rows, d = c.dim, layers = c.layers;
  const int64_t up_width = c.arch == Arch::gpt2 ? c.hidden : 2 * c.hidden;
  const int64_t x_slots = o.train ? 2 * layers + 1 : 1, layer_slots = o.train ? layers : 1;
  reserve(s.x, static_cast<size_t>(x_slots * N * d), "activations");
  reserve(s.stats, static_cast<size_t>(x_slots * 2 * N), "activations");
  reserve(s.qkv, static_cast<size_t>(layer_slots * N * c.qkv_dim()), "activations");
  reserve(s.lse, static_cast<size_t>(layer_slots * s.batch * c.heads * s.steps), "activations");
  reserve(s.att, static_cast<size_t>(layer_slots * N * c.q_dim()), "activations");
  reserve(s.pre, static_cast<size_t>(layer_slots * N * up_width), "activations");
  reserve(s.final_normed, static_cast<size_t>(N * d), "activations");
  reserve(s.normed, static_cast<size_t>(N * d), "activations");
  reserve(s.act, static_cast<size_t>(layer_slots * N * c.hidden), "activations");

  run_layers(s, nullptr);

  ForwardResult r;
  if (o.logits) {
    r.logits = empty({s.batch, s.steps, c.vocab}, DType::f32, Device::host());
    linear(s.final_normed.data(), N, d, params_.data<float>() + layout_.lm_head, c.vocab, r.logits.data<float>(),
           c.vocab, false);
  }
  if (o.logprobs || o.entropy) head_logprobs(s, o, r);
  if (o.values) {
    r.values = empty({s.batch, s.steps}, DType::f32, Device::host());
    linear(s.final_normed.data(), N, d, params_.data<float>() + layout_.score, 1, r.values.data<float>(), 1, false);
    if (o.action_values) r.values = values_on_action_grid(r.values);
  }
  if (!o.train) s.train = false;
  return r;
}

void Transformer::backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values_in,
                           const RegionFinal& on_final) {
  RLF_CHECK(saved_ && saved_->train, "model.backward: run a forward with train: true first");
  Saved& s = *saved_;
  const ModelConfig& c = config_;
  const int64_t N = s.rows, d = c.dim, T = s.steps;
  check_backward(grad_logp, grad_entropy, grad_values_in, s.batch, T, s.entropy, s.action_values);
  const Tensor grad_values = grad_values_in.defined() && s.action_values ? grad_from_action_grid(grad_values_in, T) : grad_values_in;
  const float* P = params_.data<float>();
  float* G = const_cast<float*>(grads().data<float>());
  const bool gpt2 = c.arch == Arch::gpt2;
  const int64_t qkv_dim = c.qkv_dim(), up_width = gpt2 ? c.hidden : 2 * c.hidden;

  reserve(s.dnf, static_cast<size_t>(N * d), "gradients");
  reserve(s.dx, static_cast<size_t>(N * d), "gradients");
  reserve(s.dact, static_cast<size_t>(N * c.hidden), "gradients");
  reserve(s.dpre, static_cast<size_t>(N * up_width), "gradients");
  reserve(s.datt, static_cast<size_t>(N * c.q_dim()), "gradients");
  reserve(s.dqkv, static_cast<size_t>(N * qkv_dim), "gradients");
  Buffer& dnf = s.dnf;
  std::fill(dnf.begin(), dnf.begin() + N * d, 0.0f);
  // LM head: logits again a chunk at a time, d logits in place, then back to the hidden states.
  if (grad_logp.defined() || grad_entropy.defined()) {
    const float* W = P + layout_.lm_head;
    HeadChunks head(s.final_normed, s.tokens, s.batch, T, d, c.vocab, s.head_hidden, s.head_logits);
    reserve(s.dhidden, head.hidden.size(), "gradients");
    Buffer& dhidden = s.dhidden;
    for (int64_t start = 0; start < head.total(); start += head.chunk()) {
      const int64_t rows = std::min(head.chunk(), head.total() - start);
      head.load(start, rows, W);
      LogprobsBackwardArgs a{head.logits.data(),
                             DType::f32,
                             head.next.data(),
                             rows,
                             c.vocab,
                             1.0f / s.temperature,
                             grad_logp.defined() ? grad_logp.data<float>() + start : nullptr,
                             grad_entropy.defined() ? grad_entropy.data<float>() + start : nullptr,
                             head.logits.data(),  // d logits in place
                             nullptr};
      cpu::logprobs_backward(a);
      sgemm(false, false, rows, d, c.vocab, 1.0f, head.logits.data(), c.vocab, W, d, 0.0f, dhidden.data(), d);
      sgemm(true, false, c.vocab, d, rows, 1.0f, head.logits.data(), c.vocab, head.hidden.data(), d, 1.0f,
            G + layout_.lm_head, d);
      for (int64_t i = 0; i < rows; ++i) {
        float* dst = dnf.data() + head.source(start + i) * d;
        const float* src = dhidden.data() + i * d;
        for (int64_t j = 0; j < d; ++j) dst[j] += src[j];
      }
    }
  }
  if (grad_values.defined()) {
    const float* gv = grad_values.data<float>();
    const float* w = P + layout_.score;
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < d; ++j) dnf[i * d + j] += gv[i] * w[j];
    }
    sgemm(true, false, 1, d, N, 1.0f, gv, 1, s.final_normed.data(), d, 1.0f, G + layout_.score, d);
  }

  const auto gopt = [&](size_t offset) { return offset == kNone ? nullptr : G + offset; };
  Buffer& dx = s.dx;
  std::fill(dx.begin(), dx.begin() + N * d, 0.0f);
  norm_backward(dnf.data(), s.x.data() + 2 * c.layers * N * d, P + layout_.final_norm_w, layout_.final_norm_b != kNone,
                s.stats.data() + 2 * c.layers * 2 * N, dx.data(), G + layout_.final_norm_w, gopt(layout_.final_norm_b),
                N, d);

  // Regions in the order below: the part after the layers, each layer, the embeddings.
  const std::vector<FlatRange> regions = on_final ? gradient_regions_in_backward_order(layout_) : std::vector<FlatRange>{};
  size_t next_region = 0;
  const auto region_done = [&] {
    if (on_final) on_final(regions.at(next_region++));
  };
  region_done();

  CpuOps ops{c, rope_};
  const BlockGrads grads_buffers{dx.data(), dnf.data(), s.normed.data(), s.dact.data(), s.dpre.data(), s.datt.data(),
                                 s.dqkv.data()};  // dnf is reused as the gradient at a norm's output
  for (int64_t l = c.layers - 1; l >= 0; --l) {
    const BlockSaved saved{s.batch,
                           T,
                           s.positions.data(),
                           s.masked ? s.key_valid.data() : nullptr,
                           s.x.data() + 2 * l * N * d,
                           s.x.data() + (2 * l + 1) * N * d,
                           s.stats.data() + 2 * l * 2 * N,
                           s.stats.data() + (2 * l + 1) * 2 * N,
                           s.qkv.data() + l * N * qkv_dim,
                           s.lse.data() + l * s.batch * c.heads * T,
                           s.att.data() + l * N * c.q_dim(),
                           s.pre.data() + l * N * up_width,
                           s.act.data() + l * N * c.hidden};
    block_backward(ops, c, layout_.layers[l], P, G, saved, grads_buffers);
    region_done();
  }
  embed_backward(s.tokens.data(), dx.data(), G + layout_.token_embedding, N, d);
  if (layout_.position_embedding != kNone) {
    embed_backward(s.positions.data(), dx.data(), G + layout_.position_embedding, N, d);
  }
  region_done();
  RLF_CHECK(next_region == regions.size(), "model.backward: finished ", next_region, " gradient regions of ", regions.size());
}

}  // namespace rlfarm::model
