#include "layout.h"

#include "../core/error.h"

namespace rlfarm::model {

const char* arch_name(Arch arch) { return arch == Arch::gpt2 ? "gpt2" : "llama"; }

Arch arch_from_name(const std::string& name) {
  if (name == "gpt2") return Arch::gpt2;
  if (name == "llama") return Arch::llama;
  fail("model config: arch must be 'gpt2' or 'llama'; got '", name, "'");
}

RopeScaling rope_scaling_from_name(const std::string& name) {
  if (name == "none") return RopeScaling::none;
  if (name == "linear") return RopeScaling::linear;
  if (name == "llama3") return RopeScaling::llama3;
  fail("model config: ropeScaling must be 'none', 'linear' or 'llama3'; got '", name, "'");
}

void ModelConfig::validate() const {
  const auto positive = [](int64_t v, const char* field) {
    RLF_CHECK(v > 0 && v < (int64_t(1) << 31), "model config: ", field, " must be a positive integer; got ", v);
  };
  positive(vocab, "vocab_size");
  positive(dim, "hidden_size");
  positive(layers, "num_hidden_layers");
  positive(heads, "num_attention_heads");
  positive(kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(hidden, "intermediate_size");
  positive(max_positions, "max_position_embeddings");
  RLF_CHECK(heads % kv_heads == 0, "model config: num_attention_heads (", heads,
            ") must be a multiple of num_key_value_heads (", kv_heads, ")");
  RLF_CHECK(arch == Arch::llama || (kv_heads == heads && heads * head_dim == dim),
            "model config: GPT-2 needs n_embd (", dim, ") = n_head (", heads, ") x head size (", head_dim, ")");
  RLF_CHECK(arch == Arch::gpt2 || head_dim % 2 == 0, "model config: head_dim must be even for rotary embeddings; got ",
            head_dim);
  RLF_CHECK(norm_eps > 0 && norm_eps < 1, "model config: the norm epsilon must be in (0, 1); got ", norm_eps);
  RLF_CHECK(rope_theta > 0, "model config: rope_theta must be > 0; got ", rope_theta);
  RLF_CHECK(rope_scaling == RopeScaling::none || rope_factor > 0, "model config: rope_scaling.factor must be > 0");
  RLF_CHECK(rope_scaling != RopeScaling::llama3 ||
                (rope_original_max_positions > 0 && rope_high_freq_factor > rope_low_freq_factor),
            "model config: llama3 rope_scaling needs original_max_position_embeddings > 0 and "
            "high_freq_factor > low_freq_factor");
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const auto& p : params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

namespace {

class Builder {
 public:
  explicit Builder(ParamLayout& layout) : layout_(layout) {}
  size_t add(const std::string& name, Shape shape, bool decay, bool hf_transposed = false) {
    const size_t numel = static_cast<size_t>(shape_numel(shape));
    layout_.params.push_back(ParamInfo{name, std::move(shape), layout_.total, numel, decay, hf_transposed});
    const size_t offset = layout_.total;
    layout_.total += numel;
    return offset;
  }

 private:
  ParamLayout& layout_;
};

}  // namespace

ParamLayout make_layout(const ModelConfig& c) {
  c.validate();
  ParamLayout layout;
  Builder b(layout);
  const int64_t d = c.dim;
  if (c.arch == Arch::gpt2) {
    layout.token_embedding = b.add("transformer.wte.weight", {c.vocab, d}, false);
    layout.position_embedding = b.add("transformer.wpe.weight", {c.max_positions, d}, false);
    for (int64_t i = 0; i < c.layers; ++i) {
      const std::string p = "transformer.h." + std::to_string(i) + ".";
      LayerOffsets l{};
      l.norm1_w = b.add(p + "ln_1.weight", {d}, false);
      l.norm1_b = b.add(p + "ln_1.bias", {d}, false);
      l.qkv_w = b.add(p + "attn.c_attn.weight", {3 * d, d}, true, true);
      l.qkv_b = b.add(p + "attn.c_attn.bias", {3 * d}, false);
      l.out_w = b.add(p + "attn.c_proj.weight", {d, d}, true, true);
      l.out_b = b.add(p + "attn.c_proj.bias", {d}, false);
      l.norm2_w = b.add(p + "ln_2.weight", {d}, false);
      l.norm2_b = b.add(p + "ln_2.bias", {d}, false);
      l.up_w = b.add(p + "mlp.c_fc.weight", {c.hidden, d}, true, true);
      l.up_b = b.add(p + "mlp.c_fc.bias", {c.hidden}, false);
      l.down_w = b.add(p + "mlp.c_proj.weight", {d, c.hidden}, true, true);
      l.down_b = b.add(p + "mlp.c_proj.bias", {d}, false);
      layout.layers.push_back(l);
    }
    layout.final_norm_w = b.add("transformer.ln_f.weight", {d}, false);
    layout.final_norm_b = b.add("transformer.ln_f.bias", {d}, false);
    layout.lm_head = layout.token_embedding;  // GPT-2 always ties
  } else {
    layout.token_embedding = b.add("model.embed_tokens.weight", {c.vocab, d}, false);
    for (int64_t i = 0; i < c.layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      LayerOffsets l{};
      l.norm1_w = b.add(p + "input_layernorm.weight", {d}, false);
      l.norm1_b = kNone;
      l.qkv_w = b.add(p + "self_attn.q_proj.weight", {c.q_dim(), d}, true);
      b.add(p + "self_attn.k_proj.weight", {c.kv_dim(), d}, true);
      b.add(p + "self_attn.v_proj.weight", {c.kv_dim(), d}, true);
      l.qkv_b = kNone;
      if (c.qkv_bias) {
        l.qkv_b = b.add(p + "self_attn.q_proj.bias", {c.q_dim()}, false);
        b.add(p + "self_attn.k_proj.bias", {c.kv_dim()}, false);
        b.add(p + "self_attn.v_proj.bias", {c.kv_dim()}, false);
      }
      l.out_w = b.add(p + "self_attn.o_proj.weight", {d, c.q_dim()}, true);
      l.out_b = kNone;
      l.norm2_w = b.add(p + "post_attention_layernorm.weight", {d}, false);
      l.norm2_b = kNone;
      l.up_w = b.add(p + "mlp.gate_proj.weight", {c.hidden, d}, true);
      b.add(p + "mlp.up_proj.weight", {c.hidden, d}, true);
      l.up_b = kNone;
      l.down_w = b.add(p + "mlp.down_proj.weight", {d, c.hidden}, true);
      l.down_b = kNone;
      layout.layers.push_back(l);
    }
    layout.final_norm_w = b.add("model.norm.weight", {d}, false);
    layout.final_norm_b = kNone;
    layout.lm_head = c.tie_embeddings ? layout.token_embedding : b.add("lm_head.weight", {c.vocab, d}, true);
  }
  if (c.scalar_head) layout.score = b.add("score.weight", {1, d}, true);
  return layout;
}

std::vector<FlatRange> gradient_regions_in_backward_order(const ParamLayout& layout) {
  // Layers are laid out one after another, each starting with its first norm.
  const int64_t layers = static_cast<int64_t>(layout.layers.size());
  const auto layer_begin = [&](int64_t l) { return static_cast<int64_t>(layout.layers[l].norm1_w); };
  // Both architectures put the final norm right after the last layer.
  const int64_t body_end = static_cast<int64_t>(layout.final_norm_w);
  const int64_t body_begin = layers > 0 ? layer_begin(0) : body_end;
  std::vector<FlatRange> out;
  const auto add = [&](int64_t begin, int64_t end) {
    if (end > begin) out.push_back(FlatRange{begin, end});
  };
  add(body_end, static_cast<int64_t>(layout.total));
  for (int64_t l = layers - 1; l >= 0; --l) add(layer_begin(l), l + 1 < layers ? layer_begin(l + 1) : body_end);
  add(0, body_begin);
  return out;
}

}  // namespace rlfarm::model
