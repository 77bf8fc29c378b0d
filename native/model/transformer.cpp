#include "transformer.h"
#include "transformer_impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <random>

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
  }
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

namespace {

// Attention of `queries` query rows per batch row, read from qkv rows. Keys and
// values come from the same qkv rows (cache_k null: a forward, or a prefill),
// or from one layer's cache of `slots` slots per row (a decoding step, whose
// queries sit at query_slot[b]).
AttentionArgs attention_args(const ModelConfig& c, int64_t batch, int64_t queries, const float* qkv,
                             const uint8_t* key_valid, float* out, float* lse, const float* cache_k = nullptr,
                             const float* cache_v = nullptr, int64_t slots = 0, const int32_t* query_slot = nullptr) {
  AttentionArgs a{};
  a.batch = batch;
  a.heads = c.heads;
  a.kv_heads = c.kv_heads;
  a.head_dim = c.head_dim;
  a.queries = queries;
  a.q = qkv;
  a.q_ld = c.qkv_dim();
  a.q_batch = queries * c.qkv_dim();
  if (cache_k == nullptr) {
    a.key_slots = queries;
    a.k = qkv + c.q_dim();
    a.v = qkv + c.q_dim() + c.kv_dim();
    a.kv_ld = c.qkv_dim();
    a.kv_batch = queries * c.qkv_dim();
  } else {
    a.key_slots = slots;
    a.k = cache_k;
    a.v = cache_v;
    a.kv_ld = c.kv_dim();
    a.kv_batch = slots * c.kv_dim();
    a.query_slot = query_slot;
  }
  a.key_valid = key_valid;
  a.out = out;
  a.out_ld = c.q_dim();
  a.out_batch = queries * c.q_dim();
  a.lse = lse;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  return a;
}

}  // namespace

void Transformer::layer_forward(int64_t l, const LayerStep& st, const LayerBuffers& b) {
  const ModelConfig& c = config_;
  const int64_t N = st.batch * st.queries, d = c.dim, qkv_dim = c.qkv_dim();
  const bool gpt2 = c.arch == Arch::gpt2;
  const int64_t up_width = gpt2 ? c.hidden : 2 * c.hidden;
  const float* P = params_.data<float>();
  const auto opt = [&](size_t offset) { return offset == kNone ? nullptr : P + offset; };
  const LayerOffsets& L = layout_.layers[l];

  // Attention block.
  norm_forward(b.x_in, P + L.norm1_w, opt(L.norm1_b), b.normed, b.stats1, N, d, c.norm_eps);
  linear(b.normed, N, d, P + L.qkv_w, qkv_dim, b.qkv, qkv_dim, false, opt(L.qkv_b));
  if (!gpt2) {
    rope_.apply(b.qkv, N, qkv_dim, c.heads, st.positions, false);
    rope_.apply(b.qkv + c.q_dim(), N, qkv_dim, c.kv_heads, st.positions, false);
  }
  float* cache_k = nullptr;
  float* cache_v = nullptr;
  if (st.cache != nullptr) {  // this step's keys and values go to the cache, query i of row b at slot query_slot[b] + i
    const int64_t kv = c.kv_dim(), slots = st.cache->slots;
    cache_k = st.cache->k.data() + l * st.batch * slots * kv;
    cache_v = st.cache->v.data() + l * st.batch * slots * kv;
    for (int64_t r = 0; r < st.batch; ++r) {
      for (int64_t i = 0; i < st.queries; ++i) {
        const float* row = b.qkv + (r * st.queries + i) * qkv_dim;
        const int64_t slot = (st.query_slot != nullptr ? st.query_slot[r] : 0) + i;
        std::memcpy(cache_k + (r * slots + slot) * kv, row + c.q_dim(), sizeof(float) * kv);
        std::memcpy(cache_v + (r * slots + slot) * kv, row + c.q_dim() + kv, sizeof(float) * kv);
      }
    }
  }
  attention_forward(st.read_cache ? attention_args(c, st.batch, st.queries, b.qkv, st.key_valid, b.att, b.lse, cache_k,
                                                   cache_v, st.cache->slots, st.query_slot)
                                  : attention_args(c, st.batch, st.queries, b.qkv, st.key_valid, b.att, b.lse));
  if (b.x_mid != b.x_in) std::memcpy(b.x_mid, b.x_in, sizeof(float) * N * d);
  linear(b.att, N, c.q_dim(), P + L.out_w, d, b.x_mid, d, true, opt(L.out_b));

  // MLP block.
  norm_forward(b.x_mid, P + L.norm2_w, opt(L.norm2_b), b.normed, b.stats2, N, d, c.norm_eps);
  linear(b.normed, N, d, P + L.up_w, up_width, b.pre, up_width, false, opt(L.up_b));
  if (gpt2) gelu(b.pre, b.act, N * c.hidden);
  else swiglu(b.pre, b.act, N, c.hidden);
  if (b.x_out != b.x_mid) std::memcpy(b.x_out, b.x_mid, sizeof(float) * N * d);
  linear(b.act, N, c.hidden, P + L.down_w, d, b.x_out, d, true, opt(L.down_b));
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
  check_tokens(tokens, mask, "model.forward");
  RLF_CHECK(std::isfinite(o.temperature) && o.temperature > 0, "model.forward: temperature must be > 0; got ",
            o.temperature);
  RLF_CHECK(!o.values || layout_.score != kNone,
            "model.forward: values need a scalar head; load or create the model with scalarHead: true");
  const ModelConfig& c = config_;
  if (!saved_) saved_.reset(new Saved());
  Saved& s = *saved_;
  s.batch = tokens.shape[0];
  s.steps = tokens.shape[1];
  s.rows = s.batch * s.steps;
  s.train = o.train;
  s.temperature = o.temperature;
  s.entropy = o.entropy;
  s.tokens.assign(tokens.data<int32_t>(), tokens.data<int32_t>() + s.rows);
  positions_from_mask(mask, s.batch, s.steps, s.positions, s.key_valid);
  s.masked = mask.defined();
  if (c.arch == Arch::gpt2) {
    const int32_t longest = *std::max_element(s.positions.begin(), s.positions.end());
    RLF_CHECK(longest < c.max_positions, "model.forward: position ", longest, " is past GPT-2's n_positions (",
              c.max_positions, "); use sequences of at most ", c.max_positions, " tokens");
  }
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
  }
  if (!o.train) s.train = false;
  return r;
}

void Transformer::backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values) {
  RLF_CHECK(saved_ && saved_->train, "model.backward: run a forward with train: true first");
  Saved& s = *saved_;
  const ModelConfig& c = config_;
  const int64_t N = s.rows, d = c.dim, T = s.steps, targets = T - 1;
  const Shape target_shape{s.batch, targets};
  for (const auto& [g, name, shape] : {std::tuple{&grad_logp, "gradLogp", target_shape},
                                       std::tuple{&grad_entropy, "gradEntropy", target_shape},
                                       std::tuple{&grad_values, "gradValues", Shape{s.batch, T}}}) {
    if (!g->defined()) continue;
    check_usable(*g, "model.backward");
    RLF_CHECK(g->dtype == DType::f32 && g->device().is_cpu() && g->shape == shape, "model.backward: ", name,
              " must be a cpu f32 tensor ", shape_str(shape), " (the forward's batch); got ", g->describe());
  }
  RLF_CHECK(!grad_entropy.defined() || s.entropy, "model.backward: gradEntropy needs a forward with entropy: true");
  RLF_CHECK(!grad_values.defined() || layout_.score != kNone, "model.backward: gradValues needs a scalar head");
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

  const auto opt = [&](size_t offset) { return offset == kNone ? nullptr : P + offset; };
  const auto gopt = [&](size_t offset) { return offset == kNone ? nullptr : G + offset; };
  Buffer& dx = s.dx;
  std::fill(dx.begin(), dx.begin() + N * d, 0.0f);
  norm_backward(dnf.data(), s.x.data() + 2 * c.layers * N * d, P + layout_.final_norm_w, layout_.final_norm_b != kNone,
                s.stats.data() + 2 * c.layers * 2 * N, dx.data(), G + layout_.final_norm_w, gopt(layout_.final_norm_b),
                N, d);

  Buffer &dact = s.dact, &dpre = s.dpre, &datt = s.datt, &dqkv = s.dqkv;
  Buffer& dn = dnf;  // reused as the gradient at a norm's output
  for (int64_t l = c.layers - 1; l >= 0; --l) {
    const LayerOffsets& L = layout_.layers[l];
    const float* x_in = s.x.data() + 2 * l * N * d;
    const float* x_mid = s.x.data() + (2 * l + 1) * N * d;
    const float* stats1 = s.stats.data() + 2 * l * 2 * N;
    const float* stats2 = s.stats.data() + (2 * l + 1) * 2 * N;
    const float* qkv = s.qkv.data() + l * N * qkv_dim;
    const float* lse = s.lse.data() + l * s.batch * c.heads * T;
    const float* att = s.att.data() + l * N * c.q_dim();
    const float* pre = s.pre.data() + l * N * up_width;

    // MLP block: x_out = x_mid + act W_down^T + b_down, act = f(pre), pre = norm2(x_mid) W_up^T + b_up.
    norm_reapply(x_mid, P + L.norm2_w, opt(L.norm2_b), stats2, s.normed.data(), N, d);
    const float* act = s.act.data() + l * N * c.hidden;
    sgemm(true, false, d, c.hidden, N, 1.0f, dx.data(), d, act, c.hidden, 1.0f, G + L.down_w, c.hidden);
    if (L.down_b != kNone) bias_grad(dx.data(), d, G + L.down_b, N, d);
    sgemm(false, false, N, c.hidden, d, 1.0f, dx.data(), d, P + L.down_w, c.hidden, 0.0f, dact.data(), c.hidden);
    if (gpt2) gelu_backward(pre, dact.data(), dpre.data(), N * c.hidden);
    else swiglu_backward(pre, dact.data(), dpre.data(), N, c.hidden);
    sgemm(true, false, up_width, d, N, 1.0f, dpre.data(), up_width, s.normed.data(), d, 1.0f, G + L.up_w, d);
    if (L.up_b != kNone) bias_grad(dpre.data(), up_width, G + L.up_b, N, up_width);
    sgemm(false, false, N, d, up_width, 1.0f, dpre.data(), up_width, P + L.up_w, d, 0.0f, dn.data(), d);
    norm_backward(dn.data(), x_mid, P + L.norm2_w, L.norm2_b != kNone, stats2, dx.data(), G + L.norm2_w,
                  gopt(L.norm2_b), N, d);

    // Attention block: x_mid = x_in + att W_out^T + b_out.
    sgemm(true, false, d, c.q_dim(), N, 1.0f, dx.data(), d, att, c.q_dim(), 1.0f, G + L.out_w, c.q_dim());
    if (L.out_b != kNone) bias_grad(dx.data(), d, G + L.out_b, N, d);
    sgemm(false, false, N, c.q_dim(), d, 1.0f, dx.data(), d, P + L.out_w, c.q_dim(), 0.0f, datt.data(), c.q_dim());
    AttentionGradArgs ga{};
    ga.fwd = attention_args(c, s.batch, T, qkv, s.masked ? s.key_valid.data() : nullptr, const_cast<float*>(att),
                            const_cast<float*>(lse));
    ga.dout = datt.data();
    ga.dq = dqkv.data();
    ga.dk = dqkv.data() + c.q_dim();
    ga.dv = dqkv.data() + c.q_dim() + c.kv_dim();
    attention_backward(ga);
    if (!gpt2) {
      rope_.apply(dqkv.data(), N, qkv_dim, c.heads, s.positions.data(), true);
      rope_.apply(dqkv.data() + c.q_dim(), N, qkv_dim, c.kv_heads, s.positions.data(), true);
    }
    norm_reapply(x_in, P + L.norm1_w, opt(L.norm1_b), stats1, s.normed.data(), N, d);
    sgemm(true, false, qkv_dim, d, N, 1.0f, dqkv.data(), qkv_dim, s.normed.data(), d, 1.0f, G + L.qkv_w, d);
    if (L.qkv_b != kNone) bias_grad(dqkv.data(), qkv_dim, G + L.qkv_b, N, qkv_dim);
    sgemm(false, false, N, d, qkv_dim, 1.0f, dqkv.data(), qkv_dim, P + L.qkv_w, d, 0.0f, dn.data(), d);
    norm_backward(dn.data(), x_in, P + L.norm1_w, L.norm1_b != kNone, stats1, dx.data(), G + L.norm1_w,
                  gopt(L.norm1_b), N, d);
  }
  embed_backward(s.tokens.data(), dx.data(), G + layout_.token_embedding, N, d);
  if (layout_.position_embedding != kNone) {
    embed_backward(s.positions.data(), dx.data(), G + layout_.position_embedding, N, d);
  }
}

}  // namespace rlfarm::model
