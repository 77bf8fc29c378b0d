#!/usr/bin/python3
"""Tiny Hugging Face-style model fixtures for the native transformer engine.

Run (from the repository root; needs only PyTorch, no `transformers`):

    /usr/bin/python3 scripts/make_model_fixtures.py

It rewrites test/fixtures/models/ (about 4.6 MB, a few seconds) and prints the
cross-checks it ran. Everything is seeded and single-threaded, so a re-run on
the same machine and torch version writes byte-identical files; on another
machine float32 results may differ in the last bits (the files are committed,
the TypeScript tests never run Python).

What it does
------------
A from-scratch float32 PyTorch implementation of Hugging Face's eager
GPT2LMHeadModel, LlamaForCausalLM and Qwen2ForCausalLM forward passes (the same
operations in the same order: GPT-2 Conv1D y = x @ W + b with W stored
[in, out]; Linear y = x @ W^T + b with W stored [out, in]; RMSNorm in float32;
rotate_half RoPE with HF's inv_freq formulas incl. rope_type "llama3";
repeat_kv grouped-query attention; additive mask of finfo(float32).min),
builds tiny randomly initialised models, writes them as HF model directories
(config.json + safetensors written by the small writer below) and writes the
reference outputs of each to expected.safetensors.

Directories (test/fixtures/models/<name>/):
  gpt2-tiny           GPT-2, vocab 96, n_positions 32, n_embd 48, 2 layers, 4 heads.
                      Names "transformer.*"; lm_head tied to wte, not in the file.
  gpt2-tiny-noprefix  the same weights without the "transformer." prefix, plus
                      the causal-mask buffers "h.<i>.attn.bias" F32 [1,1,32,32]
                      (lower-triangular ones) that the original gpt2 checkpoint
                      on the Hub carries; a loader must ignore them (they are
                      NOT attention biases).
  llama-tiny          Llama, vocab 96, hidden 48, 2 layers, 4 heads, 2 kv heads,
                      intermediate 80, rms_norm_eps 1e-6, rope_theta 1e4,
                      untied lm_head.weight.
  qwen2-tiny          Qwen2, vocab 96, hidden 32, 2 layers, 4 heads, 1 kv head,
                      intermediate 48, rms_norm_eps 1e-6, rope_theta 1e6, q/k/v
                      biases (o_proj has none), tied embeddings. Its config has
                      no attention_bias field (real Qwen2 configs don't):
                      model_type qwen2 implies the q/k/v biases.
  llama3-tiny         Llama-3.2 style: vocab 96, hidden 64, 1 layer, 2 heads
                      (head_dim 32), 1 kv head, intermediate 48, rms_norm_eps
                      1e-5, tied, rope_theta 5e5, rope_scaling {rope_type llama3,
                      factor 8, low_freq_factor 1, high_freq_factor 4,
                      original_max_position_embeddings 16}: inv_freq 0 and 1
                      fall in the smoothed band, 2..15 are divided by 8 (the
                      "unchanged" band, wavelen < 4, is empty: every wavelength
                      is >= 2*pi).
  llama-tiny-sharded  llama-tiny's weights in model-00001-of-00002.safetensors
                      (embed_tokens + layer 0) and model-00002-of-00002.safetensors
                      (layer 1, norm, lm_head) + model.safetensors.index.json.
  llama-tiny-bf16     llama-tiny's weights rounded (nearest-even) to bfloat16 and
                      stored as BF16; config torch_dtype "bfloat16"; expected
                      values computed in float32 from the rounded weights.

Each directory holds config.json, the weights, score.safetensors (the scalar
head "score.weight" F32 [1, hidden], like AutoModelForSequenceClassification's
score, no bias) and expected.safetensors.

expected.safetensors (B = 2, T = 10; row 1 is LEFT-padded by 3; pad id 0)
  tokens          I32 [2,10]
  attention_mask  I32 [2,10]   row 0 all ones, row 1 = 0,0,0,1,...,1
  position_ids    I32 [2,10]   cumsum(mask) - 1 clipped at 0 (pads get 0)
  logits          F32 [2,10,V] forward with that mask and those positions
  logprobs        F32 [2,9]    log_softmax(logits[:, t])[tokens[:, t+1]], t = 0..8
  loss            F32 [1]      LOSS RULE: valid[b,t] = mask[b,t] * mask[b,t+1]
                               (t = 0..8: both the input and the target token are
                               real); loss = -sum(valid * logprobs) / sum(valid),
                               one token-mean over the whole batch (here 9 + 6 =
                               15 terms). Equals HF's CrossEntropyLoss(ignore -100)
                               with labels[b,t] = -100 where mask[b,t] == 0 or
                               mask[b,t-1] == 0.
  grad.<name>     F32, the gradient of loss for every parameter, same name and
                  stored orientation as in the weights file (Conv1D [in, out],
                  Linear [out, in]); tied models: one embedding grad holding both
                  the input and the output use.
  adamw1.<name>, adamw2.<name>  parameters after 1 and 2 steps of
                  torch.optim.AdamW(lr=1e-2, betas=(0.9, 0.95), eps=1e-8,
                  weight_decay=0.1 on the decay group, 0 otherwise), the loss
                  recomputed before each step. DECAY RULE: a parameter decays iff
                  it has >= 2 dims and is not an embedding (wte, wpe,
                  embed_tokens); an untied lm_head.weight decays; norm weights
                  and biases do not. Tied embeddings do not decay.
  clipped.<name>  parameters after one AdamW step (same settings) taken after
                  torch.nn.utils.clip_grad_norm_(params, max_norm=0.05):
                  g *= min(1, 0.05 / (total_norm + 1e-6)).
  grad_norm       F32 [1], total L2 norm of all parameter grads before clipping.
  score.weight    F32 [1,hidden] (also in score.safetensors)
  values          F32 [2,10]   final normed hidden state @ score.weight^T
  value_weights   F32 [2,10]   random, zero at pad positions
  grad_values.<name>  grads of sum(values * value_weights) for every model
                  parameter and for score.weight ("grad_values.score.weight").
  greedy          I32 [2,16]   the tokens plus 6 greedy steps: each step a full
                  forward over the sequence so far, argmax of the last
                  position's logits (no EOS stop), new tokens get mask 1 and
                  position = the row's previous max position + 1.

The variants gpt2-tiny-noprefix and llama-tiny-sharded have the same weights as
their base, so their expected.safetensors holds only the forward-level entries
(tokens, attention_mask, position_ids, logits, logprobs, loss, score.weight,
values, value_weights, greedy), identical to the base's; llama-tiny-bf16 holds
those plus grad.* (no grad_values.*, AdamW or clip entries). This keeps the
folder small (the full set is about five copies of a model's parameters: 1.5 MB
for gpt2-tiny, 1.1 MB for llama-tiny); gradients and optimizer steps are
checked on the base models.

Values at pad QUERY positions (logits[1, 0:3], values[1, 0:3], logprobs[1, 0:3])
follow HF eager's additive finfo.min mask, where a query with no visible key
attends uniformly to all T keys. That is a convention, not a meaning: tests
should compare only real positions. Nothing else depends on them (pad keys are
masked for real queries, the loss and value_weights ignore pad positions).

Dropout is off (the configs say 0.0). The weights are initialised with larger
std (0.1-0.3) than HF's 0.02 so that attention patterns, softmaxes and greedy
choices are far from uniform and bugs show.

Checks printed at the end of a run: an independent float64 implementation
(explicit loops over heads and queries, complex-number RoPE, Meta's
per-frequency llama3 scaling loop, softmax over visible keys only) against the
batched reference; padding invariance (row 1's real positions = the unpadded
sequence with positions 0..6); gradients against float64 central finite
differences; the loss rule against F.cross_entropy with ignore_index; a hand
AdamW and clip against torch's; bf16 round trip; greedy top-2 margins; and a
reader that re-parses every written safetensors file and compares every tensor
byte for byte.
"""
import json
import math
import os
import shutil
import struct
import sys
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'models')

B, T, PAD_LEFT, GEN_STEPS, PAD_ID = 2, 10, 3, 6, 0
LR, BETAS, EPS, WD, CLIP = 1e-2, (0.9, 0.95), 1e-8, 0.1, 0.05

CHECKS = []  # (name, ok, detail)
SECTION = ['']


def section(name):
    SECTION[0] = name
    print(name + ':')


def check(name, ok, detail=''):
    CHECKS.append((f'{SECTION[0]}: {name}', bool(ok), detail))
    print(('  ok   ' if ok else '  FAIL ') + name + (f'  [{detail}]' if detail else ''))


# --------------------------------------------------------------------------
# safetensors writer / reader
# --------------------------------------------------------------------------
DTYPES = {torch.float32: ('F32', 4), torch.int32: ('I32', 4), torch.bfloat16: ('BF16', 2)}
WRITTEN = {}  # path -> {name: (dtype, shape, bytes)}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy().astype('<i2')
    elif t.dtype == torch.float32:
        arr = t.numpy().astype('<f4')
    elif t.dtype == torch.int32:
        arr = t.numpy().astype('<i4')
    else:
        raise TypeError(f'unsupported dtype {t.dtype}')
    return arr.tobytes()


def write_safetensors(path, tensors, metadata=None):
    """8-byte LE header length, JSON header (sorted keys, data_offsets relative
    to the data buffer), space-padded to a multiple of 8, then the tensors'
    little-endian bytes back to back in name order."""
    header, blobs, offset, record = {}, [], 0, {}
    for name in sorted(tensors):
        t = tensors[name]
        dt, _ = DTYPES[t.dtype]
        b = tensor_bytes(t)
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        record[name] = (dt, list(t.shape), b)
        offset += len(b)
    if metadata is not None:
        header['__metadata__'] = metadata
    h = json.dumps(header, sort_keys=True, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    WRITTEN[path] = record


def read_safetensors(path):
    """Independent parser: returns ({name: (dtype, shape, bytes)}, metadata)."""
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    assert n % 8 == 0, 'header length not a multiple of 8'
    hb = raw[8:8 + n]
    assert hb[:1] == b'{', 'header must start with {'
    header = json.loads(hb.decode('utf-8'))
    meta = header.pop('__metadata__', None)
    data = raw[8 + n:]
    spans = sorted((v['data_offsets'][0], v['data_offsets'][1], k) for k, v in header.items())
    pos = 0
    for s, e, k in spans:
        assert s == pos, f'hole or overlap before {k}'
        pos = e
    assert pos == len(data), 'trailing bytes after the last tensor'
    size = {'F32': 4, 'I32': 4, 'BF16': 2}
    out = {}
    for k, v in header.items():
        s, e = v['data_offsets']
        assert (e - s) == size[v['dtype']] * math.prod(v['shape']), f'size mismatch for {k}'
        out[k] = (v['dtype'], v['shape'], data[s:e])
    return out, meta


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write('\n')


# --------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------
def normal(g, shape, std):
    return torch.randn(*shape, generator=g) * std


def norm_weight(g, n):
    return 1.0 + normal(g, (n,), 0.1)


def init_gpt2(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    E, V, P, L = cfg['n_embd'], cfg['vocab_size'], cfg['n_positions'], cfg['n_layer']
    I = 4 * E
    p = OrderedDict()
    p['transformer.wte.weight'] = normal(g, (V, E), 0.15)
    p['transformer.wpe.weight'] = normal(g, (P, E), 0.1)
    for i in range(L):
        h = f'transformer.h.{i}.'
        p[h + 'ln_1.weight'] = norm_weight(g, E)
        p[h + 'ln_1.bias'] = normal(g, (E,), 0.05)
        p[h + 'attn.c_attn.weight'] = normal(g, (E, 3 * E), 0.15)
        p[h + 'attn.c_attn.bias'] = normal(g, (3 * E,), 0.05)
        p[h + 'attn.c_proj.weight'] = normal(g, (E, E), 0.1)
        p[h + 'attn.c_proj.bias'] = normal(g, (E,), 0.05)
        p[h + 'ln_2.weight'] = norm_weight(g, E)
        p[h + 'ln_2.bias'] = normal(g, (E,), 0.05)
        p[h + 'mlp.c_fc.weight'] = normal(g, (E, I), 0.1)
        p[h + 'mlp.c_fc.bias'] = normal(g, (I,), 0.05)
        p[h + 'mlp.c_proj.weight'] = normal(g, (I, E), 0.07)
        p[h + 'mlp.c_proj.bias'] = normal(g, (E,), 0.05)
    p['transformer.ln_f.weight'] = norm_weight(g, E)
    p['transformer.ln_f.bias'] = normal(g, (E,), 0.05)
    return p


def llama_dims(cfg):
    H, KV = cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd = cfg['hidden_size'] // H
    return H, KV, hd


def has_qkv_bias(cfg):
    return cfg['model_type'] == 'qwen2' or cfg.get('attention_bias', False)


def has_o_bias(cfg):
    return cfg['model_type'] != 'qwen2' and cfg.get('attention_bias', False)


def init_llama(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    D, V, L, I = cfg['hidden_size'], cfg['vocab_size'], cfg['num_hidden_layers'], cfg['intermediate_size']
    H, KV, hd = llama_dims(cfg)
    tied = cfg['tie_word_embeddings']
    p = OrderedDict()
    p['model.embed_tokens.weight'] = normal(g, (V, D), 0.15 if tied else 0.5)
    for i in range(L):
        h = f'model.layers.{i}.'
        p[h + 'input_layernorm.weight'] = norm_weight(g, D)
        p[h + 'self_attn.q_proj.weight'] = normal(g, (H * hd, D), 0.15)
        p[h + 'self_attn.k_proj.weight'] = normal(g, (KV * hd, D), 0.15)
        p[h + 'self_attn.v_proj.weight'] = normal(g, (KV * hd, D), 0.1)
        if has_qkv_bias(cfg):
            p[h + 'self_attn.q_proj.bias'] = normal(g, (H * hd,), 0.05)
            p[h + 'self_attn.k_proj.bias'] = normal(g, (KV * hd,), 0.05)
            p[h + 'self_attn.v_proj.bias'] = normal(g, (KV * hd,), 0.05)
        p[h + 'self_attn.o_proj.weight'] = normal(g, (D, H * hd), 0.1)
        if has_o_bias(cfg):
            p[h + 'self_attn.o_proj.bias'] = normal(g, (D,), 0.05)
        p[h + 'post_attention_layernorm.weight'] = norm_weight(g, D)
        p[h + 'mlp.gate_proj.weight'] = normal(g, (I, D), 0.1)
        p[h + 'mlp.up_proj.weight'] = normal(g, (I, D), 0.1)
        p[h + 'mlp.down_proj.weight'] = normal(g, (D, I), 0.1)
    p['model.norm.weight'] = norm_weight(g, D)
    if not tied:
        p['lm_head.weight'] = normal(g, (V, D), 0.15)
    return p


# --------------------------------------------------------------------------
# reference forward passes (HF eager semantics, batched)
# --------------------------------------------------------------------------
def additive_mask(mask, dtype):
    """[B,1,T,T]: 0 where key j is visible to query i (j <= i and mask[j] == 1),
    finfo(dtype).min elsewhere (HF's eager mask)."""
    Tn = mask.shape[1]
    causal = torch.tril(torch.ones(Tn, Tn, dtype=torch.bool))
    allowed = causal[None, :, :] & (mask[:, None, :] == 1)
    m = torch.zeros(allowed.shape, dtype=dtype)
    m = m.masked_fill(~allowed, torch.finfo(dtype).min)
    return m[:, None, :, :]


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_forward(p, cfg, tokens, mask, pos):
    Bn, Tn = tokens.shape
    E, H, L = cfg['n_embd'], cfg['n_head'], cfg['n_layer']
    hd, eps = E // H, cfg['layer_norm_epsilon']
    wte = p['transformer.wte.weight']
    x = wte[tokens] + p['transformer.wpe.weight'][pos]
    am = additive_mask(mask, x.dtype)
    for i in range(L):
        h = f'transformer.h.{i}.'
        a = F.layer_norm(x, (E,), p[h + 'ln_1.weight'], p[h + 'ln_1.bias'], eps)
        qkv = a @ p[h + 'attn.c_attn.weight'] + p[h + 'attn.c_attn.bias']
        q, k, v = qkv.split(E, dim=-1)
        q, k, v = (t.view(Bn, Tn, H, hd).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s + am
        w = torch.softmax(s, dim=-1)
        o = (w @ v).transpose(1, 2).reshape(Bn, Tn, E)
        x = x + (o @ p[h + 'attn.c_proj.weight'] + p[h + 'attn.c_proj.bias'])
        a = F.layer_norm(x, (E,), p[h + 'ln_2.weight'], p[h + 'ln_2.bias'], eps)
        m = gelu_new(a @ p[h + 'mlp.c_fc.weight'] + p[h + 'mlp.c_fc.bias'])
        x = x + (m @ p[h + 'mlp.c_proj.weight'] + p[h + 'mlp.c_proj.bias'])
    x = F.layer_norm(x, (E,), p['transformer.ln_f.weight'], p['transformer.ln_f.bias'], eps)
    return x @ wte.t(), x


def rope_inv_freq(cfg):
    """HF _compute_default_rope_parameters (+ _compute_llama3_parameters), float32."""
    _, _, hd = llama_dims(cfg)
    base = float(cfg['rope_theta'])
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = cfg.get('rope_scaling')
    if rs is not None:
        assert rs['rope_type'] == 'llama3'
        factor, lo, hi = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor']
        old = rs['original_max_position_embeddings']
        low_freq_wavelen, high_freq_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium, smoothed, inv_freq_llama)
    return inv_freq


def rope_cos_sin(cfg, pos, dtype):
    inv = rope_inv_freq(cfg)
    inv_e = inv[None, :, None].float().expand(pos.shape[0], -1, 1)
    freqs = (inv_e @ pos[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x, w, eps):
    dt = x.dtype
    xf = x.to(torch.float32) if dt != torch.float64 else x
    var = xf.pow(2).mean(-1, keepdim=True)
    return w * (xf * torch.rsqrt(var + eps)).to(dt)


def linear(x, p, name):
    y = x @ p[name + '.weight'].t()
    if name + '.bias' in p:
        y = y + p[name + '.bias']
    return y


def repeat_kv(x, n):
    b, kv, s, d = x.shape
    if n == 1:
        return x
    return x[:, :, None].expand(b, kv, n, s, d).reshape(b, kv * n, s, d)


def llama_forward(p, cfg, tokens, mask, pos):
    Bn, Tn = tokens.shape
    H, KV, hd = llama_dims(cfg)
    eps, L = cfg['rms_norm_eps'], cfg['num_hidden_layers']
    emb = p['model.embed_tokens.weight']
    x = emb[tokens]
    cos, sin = rope_cos_sin(cfg, pos, x.dtype)
    cos, sin = cos[:, None], sin[:, None]
    am = additive_mask(mask, x.dtype)
    for i in range(L):
        h = f'model.layers.{i}.'
        a = rms_norm(x, p[h + 'input_layernorm.weight'], eps)
        q = linear(a, p, h + 'self_attn.q_proj').view(Bn, Tn, H, hd).transpose(1, 2)
        k = linear(a, p, h + 'self_attn.k_proj').view(Bn, Tn, KV, hd).transpose(1, 2)
        v = linear(a, p, h + 'self_attn.v_proj').view(Bn, Tn, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
        s = (q @ k.transpose(2, 3)) * hd ** -0.5 + am
        w = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype) if q.dtype != torch.float64 else torch.softmax(s, -1)
        o = (w @ v).transpose(1, 2).reshape(Bn, Tn, H * hd)
        x = x + linear(o, p, h + 'self_attn.o_proj')
        a = rms_norm(x, p[h + 'post_attention_layernorm.weight'], eps)
        m = F.silu(linear(a, p, h + 'mlp.gate_proj')) * linear(a, p, h + 'mlp.up_proj')
        x = x + linear(m, p, h + 'mlp.down_proj')
    x = rms_norm(x, p['model.norm.weight'], eps)
    head = emb if cfg['tie_word_embeddings'] else p['lm_head.weight']
    return x @ head.t(), x


def forward(kind, p, cfg, tokens, mask, pos):
    return (gpt2_forward if kind == 'gpt2' else llama_forward)(p, cfg, tokens, mask, pos)


# --------------------------------------------------------------------------
# independent float64 implementation (one unpadded sequence, explicit loops)
# --------------------------------------------------------------------------
def naive_softmax(xs):
    m = max(xs)
    e = [math.exp(v - m) for v in xs]
    s = sum(e)
    return [v / s for v in e]


def naive_attention(q, k, v, H, KV, scale):
    """q [T,H,hd], k/v [T,KV,hd] float64 torch; query head h reads kv head h // (H/KV)."""
    Tn, _, hd = q.shape
    out = torch.zeros(Tn, H, hd, dtype=torch.float64)
    rep = H // KV
    for h in range(H):
        g = h // rep
        for i in range(Tn):
            scores = [float(q[i, h] @ k[j, g]) * scale for j in range(i + 1)]
            w = naive_softmax(scores)
            for j in range(i + 1):
                out[i, h] += w[j] * v[j, g]
    return out


def naive_gpt2(p, cfg, toks):
    p = {k: v.double() for k, v in p.items()}
    E, H, L, eps = cfg['n_embd'], cfg['n_head'], cfg['n_layer'], cfg['layer_norm_epsilon']
    hd, Tn = E // H, len(toks)

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * w + b

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    x = torch.stack([p['transformer.wte.weight'][t] + p['transformer.wpe.weight'][i] for i, t in enumerate(toks)])
    for l in range(L):
        h = f'transformer.h.{l}.'
        a = ln(x, p[h + 'ln_1.weight'], p[h + 'ln_1.bias'])
        W, bb = p[h + 'attn.c_attn.weight'], p[h + 'attn.c_attn.bias']
        q = (a @ W[:, :E] + bb[:E]).view(Tn, H, hd)
        k = (a @ W[:, E:2 * E] + bb[E:2 * E]).view(Tn, H, hd)
        v = (a @ W[:, 2 * E:] + bb[2 * E:]).view(Tn, H, hd)
        o = naive_attention(q, k, v, H, H, 1 / math.sqrt(hd)).reshape(Tn, E)
        x = x + o @ p[h + 'attn.c_proj.weight'] + p[h + 'attn.c_proj.bias']
        a = ln(x, p[h + 'ln_2.weight'], p[h + 'ln_2.bias'])
        x = x + gelu(a @ p[h + 'mlp.c_fc.weight'] + p[h + 'mlp.c_fc.bias']) @ p[h + 'mlp.c_proj.weight'] + p[h + 'mlp.c_proj.bias']
    x = ln(x, p['transformer.ln_f.weight'], p['transformer.ln_f.bias'])
    return x @ p['transformer.wte.weight'].t(), x


def naive_inv_freq(cfg):
    """Meta's original per-frequency llama3 scaling loop, float64 Python."""
    _, _, hd = llama_dims(cfg)
    base = float(cfg['rope_theta'])
    freqs = [1.0 / base ** (2 * i / hd) for i in range(hd // 2)]
    rs = cfg.get('rope_scaling')
    if rs is None:
        return freqs
    sf, lo, hi, old = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor'], rs['original_max_position_embeddings']
    low_wl, high_wl = old / lo, old / hi
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(f)
        elif wl > low_wl:
            out.append(f / sf)
        else:
            s = (old / wl - lo) / (hi - lo)
            out.append((1 - s) * f / sf + s * f)
    return out


def naive_rope(x, positions, inv):
    """x [T,heads,hd]; pairs (i, i + hd/2) as complex numbers times e^{i pos f_i}."""
    Tn, nh, hd = x.shape
    h2 = hd // 2
    out = torch.empty_like(x)
    for t in range(Tn):
        rot = torch.tensor([complex(math.cos(positions[t] * f), math.sin(positions[t] * f)) for f in inv], dtype=torch.complex128)
        z = torch.complex(x[t, :, :h2], x[t, :, h2:]) * rot
        out[t, :, :h2], out[t, :, h2:] = z.real, z.imag
    return out


def naive_llama(p, cfg, toks):
    p = {k: v.double() for k, v in p.items()}
    H, KV, hd = llama_dims(cfg)
    eps, L, Tn = cfg['rms_norm_eps'], cfg['num_hidden_layers'], len(toks)
    inv = naive_inv_freq(cfg)

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    def lin(x, name):
        y = x @ p[name + '.weight'].t()
        return y + p[name + '.bias'] if name + '.bias' in p else y

    x = torch.stack([p['model.embed_tokens.weight'][t] for t in toks])
    positions = list(range(Tn))
    for l in range(L):
        h = f'model.layers.{l}.'
        a = rms(x, p[h + 'input_layernorm.weight'])
        q = naive_rope(lin(a, h + 'self_attn.q_proj').view(Tn, H, hd), positions, inv)
        k = naive_rope(lin(a, h + 'self_attn.k_proj').view(Tn, KV, hd), positions, inv)
        v = lin(a, h + 'self_attn.v_proj').view(Tn, KV, hd)
        o = naive_attention(q, k, v, H, KV, 1 / math.sqrt(hd)).reshape(Tn, H * hd)
        x = x + lin(o, h + 'self_attn.o_proj')
        a = rms(x, p[h + 'post_attention_layernorm.weight'])
        g = lin(a, h + 'mlp.gate_proj')
        x = x + lin(g / (1 + torch.exp(-g)) * lin(a, h + 'mlp.up_proj'), h + 'mlp.down_proj')
    x = rms(x, p['model.norm.weight'])
    head = p['model.embed_tokens.weight'] if cfg['tie_word_embeddings'] else p['lm_head.weight']
    return x @ head.t(), x


# --------------------------------------------------------------------------
# objectives, optimizer, generation
# --------------------------------------------------------------------------
def token_logprobs(logits, tokens):
    lp = torch.log_softmax(logits[:, :-1], dim=-1)
    return lp.gather(-1, tokens[:, 1:, None].long()).squeeze(-1)


def lm_loss(logits, tokens, mask):
    lp = token_logprobs(logits, tokens)
    valid = (mask[:, 1:] * mask[:, :-1]).to(lp.dtype)
    return -(lp * valid).sum() / valid.sum(), lp


def is_decayed(name, t):
    emb = any(s in name for s in ('wte.weight', 'wpe.weight', 'embed_tokens.weight'))
    return t.dim() >= 2 and not emb


def make_inputs(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, vocab, (B, T), generator=g, dtype=torch.int64)
    mask = torch.ones(B, T, dtype=torch.int64)
    mask[1, :PAD_LEFT] = 0
    tokens[1, :PAD_LEFT] = PAD_ID
    pos = (torch.cumsum(mask, -1) - 1).clamp(min=0)
    vw = torch.randn(B, T, generator=g) * mask
    return tokens, mask, pos, vw


LONG_T, LONG_PAD = 150, 20


def compute_long(kind, cfg, p0, seed):
    """A longer batch (T = 150, past the engine's 64-query attention blocks;
    row 1 left-padded by 20): log-probs and the loss gradient, for long.safetensors."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, cfg['vocab_size'], (B, LONG_T), generator=g, dtype=torch.int64)
    mask = torch.ones(B, LONG_T, dtype=torch.int64)
    mask[1, :LONG_PAD] = 0
    tokens[1, :LONG_PAD] = PAD_ID
    pos = (torch.cumsum(mask, -1) - 1).clamp(min=0)
    p = leaf_params(p0)
    logits, _ = forward(kind, p, cfg, tokens, mask, pos)
    loss, lp = lm_loss(logits, tokens, mask)
    out = OrderedDict(tokens=tokens.int(), attention_mask=mask.int(), logprobs=lp.detach().clone())
    for k, gr in zip(p.keys(), torch.autograd.grad(loss, list(p.values()))):
        out['grad.' + k] = gr.clone()
    # the same positions through a prefix: causality holds across blocks
    cut = 70
    short, _ = forward(kind, p0, cfg, tokens[:, :cut], mask[:, :cut], pos[:, :cut])
    d = float((short[0] - logits[0, :cut]).abs().max())
    check(f'{kind} long batch: a 70-token prefix gives the same logits as the first 70 of 150', d < 1e-5, f'max |d| {d:.2e}')
    return out


def leaf_params(p):
    return OrderedDict((k, v.detach().clone().requires_grad_(True)) for k, v in p.items())


def adamw_run(kind, p0, cfg, tokens, mask, pos, steps, clip=None):
    p = leaf_params(p0)
    groups = [
        {'params': [v for k, v in p.items() if is_decayed(k, v)], 'weight_decay': WD},
        {'params': [v for k, v in p.items() if not is_decayed(k, v)], 'weight_decay': 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS)
    snaps, norm = [], None
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = lm_loss(forward(kind, p, cfg, tokens, mask, pos)[0], tokens, mask)
        loss.backward()
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(list(p.values()), max_norm=clip)
        opt.step()
        snaps.append(OrderedDict((k, v.detach().clone()) for k, v in p.items()))
    return snaps, norm


def manual_adamw(p0, grads_per_step, lr=LR, betas=BETAS, eps=EPS, wd=WD):
    p = {k: v.clone() for k, v in p0.items()}
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v2 = {k: torch.zeros_like(v) for k, v in p.items()}
    for step, grads in enumerate(grads_per_step, 1):
        for k in p:
            g = grads[k]
            if is_decayed(k, p[k]):
                p[k] = p[k] * (1 - lr * wd)
            m[k] = betas[0] * m[k] + (1 - betas[0]) * g
            v2[k] = betas[1] * v2[k] + (1 - betas[1]) * g * g
            denom = v2[k].sqrt() / math.sqrt(1 - betas[1] ** step) + eps
            p[k] = p[k] - (lr / (1 - betas[0] ** step)) * m[k] / denom
    return p


@torch.no_grad()
def greedy(kind, p, cfg, tokens, mask, pos, steps):
    toks, msk, ps = tokens.clone(), mask.clone(), pos.clone()
    margins = []
    for _ in range(steps):
        logits, _ = forward(kind, p, cfg, toks, msk, ps)
        last = logits[:, -1]
        top2 = last.topk(2, dim=-1).values
        margins.append(float((top2[:, 0] - top2[:, 1]).min()))
        nxt = last.argmax(-1)
        toks = torch.cat([toks, nxt[:, None]], 1)
        msk = torch.cat([msk, torch.ones(B, 1, dtype=msk.dtype)], 1)
        ps = torch.cat([ps, ps.max(-1, keepdim=True).values + 1], 1)
    return toks, min(margins)


# --------------------------------------------------------------------------
# expected outputs + checks for one model
# --------------------------------------------------------------------------
def compute_expected(name, kind, cfg, p0, score_w, seed, level):
    tokens, mask, pos, vw = make_inputs(seed, cfg['vocab_size'])
    exp = OrderedDict()
    exp['tokens'] = tokens.int()
    exp['attention_mask'] = mask.int()
    exp['position_ids'] = pos.int()
    exp['value_weights'] = vw.float()
    exp['score.weight'] = score_w.clone()

    p = leaf_params(p0)
    logits, hidden = forward(kind, p, cfg, tokens, mask, pos)
    loss, lp = lm_loss(logits, tokens, mask)
    exp['logits'] = logits.detach().clone()
    exp['logprobs'] = lp.detach().clone()
    exp['loss'] = loss.detach().reshape(1).clone()
    sw = score_w.clone().requires_grad_(True)
    values = (hidden @ sw.t()).squeeze(-1)
    exp['values'] = values.detach().clone()
    toks_g, margin = greedy(kind, p0, cfg, tokens, mask, pos, GEN_STEPS)
    exp['greedy'] = toks_g.int()

    grads = None
    if level in ('full', 'grads'):
        grads = torch.autograd.grad(loss, list(p.values()), retain_graph=True)
        for k, g in zip(p.keys(), grads):
            exp['grad.' + k] = g.clone()
        # an untied lm_head does not reach the values: its grad is zero
        vg = torch.autograd.grad((values * vw).sum(), list(p.values()) + [sw], allow_unused=True)
        for (k, v), g in zip(list(p.items()) + [('score.weight', sw)], vg):
            exp['grad_values.' + k] = torch.zeros_like(v.detach()) if g is None else g.clone()
    if level == 'full':
        snaps, _ = adamw_run(kind, p0, cfg, tokens, mask, pos, 2)
        for i, s in enumerate(snaps, 1):
            for k, v in s.items():
                exp[f'adamw{i}.{k}'] = v
        (clipped,), norm = adamw_run(kind, p0, cfg, tokens, mask, pos, 1, clip=CLIP)
        for k, v in clipped.items():
            exp['clipped.' + k] = v
        exp['grad_norm'] = norm.detach().reshape(1).float()

    # ---- checks ----
    section(name)
    # loss rule vs HF CrossEntropy with ignore_index
    labels = tokens.clone()
    labels[mask == 0] = -100
    labels[:, 1:][mask[:, :-1] == 0] = -100
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
    check('loss rule = F.cross_entropy(ignore_index=-100)', abs(float(ce) - float(loss)) < 1e-6, f'{float(loss):.6f}')

    # independent float64 loop implementation on each row's real tokens
    naive = naive_gpt2 if kind == 'gpt2' else naive_llama
    worst = 0.0
    worst_v = 0.0
    for b in range(B):
        real = mask[b].bool()
        nl, nh = naive(p0, cfg, tokens[b][real].tolist())
        worst = max(worst, float((nl - exp['logits'][b][real].double()).abs().max()))
        worst_v = max(worst_v, float((nh @ score_w.double().t()).squeeze(-1).sub(exp['values'][b][real].double()).abs().max()))
    check('batched float32 = float64 per-head/per-query loops' + ('' if kind == 'gpt2' else ' + complex RoPE'),
          worst < 2e-4 and worst_v < 2e-4, f'max |dlogits| {worst:.2e}, |dvalues| {worst_v:.2e}')

    # padding invariance: row 1 unpadded with positions 0..n-1
    r = mask[1].bool()
    n = int(r.sum())
    solo, _ = forward(kind, p0, cfg, tokens[1:2, r], torch.ones(1, n, dtype=torch.int64), torch.arange(n)[None])
    d = float((solo[0] - exp['logits'][1][r]).abs().max())
    check('left-padded row = unpadded row at real positions', d < 1e-5, f'max |d| {d:.2e}')
    # row 0 (all ones): cumsum rule = arange (HF default positions)
    check('all-ones row: cumsum(mask)-1 == arange', bool((pos[0] == torch.arange(T)).all()))

    if kind != 'gpt2':
        # HF inv_freq (float32 torch) vs Meta's per-frequency loop (float64)
        hf = rope_inv_freq(cfg).double()
        ref = torch.tensor(naive_inv_freq(cfg), dtype=torch.float64)
        d = float(((hf - ref).abs() / ref).max())
        extra = ''
        if cfg.get('rope_scaling'):
            base = torch.tensor(naive_inv_freq({**cfg, 'rope_scaling': None}), dtype=torch.float64)
            ratio = (ref / base).tolist()
            extra = ', scaled/unscaled: ' + ' '.join(f'{x:.3g}' for x in ratio[:4]) + ' ...'
        check('inv_freq (HF torch formula) = Meta loop', d < 1e-6, f'max rel {d:.1e}{extra}')

    if grads is not None:
        # float64 autograd vs finite differences, and float32 grads vs float64 grads
        p64 = OrderedDict((k, v.double().requires_grad_(True)) for k, v in p0.items())
        l64, _ = lm_loss(forward(kind, p64, cfg, tokens, mask, pos)[0].double(), tokens, mask)
        g64 = torch.autograd.grad(l64, list(p64.values()))
        g64 = dict(zip(p64.keys(), g64))
        rel32 = max(float((exp['grad.' + k].double() - g64[k]).abs().max()) for k in p64) / \
            max(float(g.abs().max()) for g in g64.values())
        gen = torch.Generator().manual_seed(seed + 7)
        keys = list(p64.keys())
        worst_fd = 0.0
        for j in range(8):
            k = keys[int(torch.randint(len(keys), (1,), generator=gen))] if j >= 3 else \
                [keys[0], keys[len(keys) // 2], keys[-1]][j]
            flat = p64[k].detach().reshape(-1)
            idx = int(torch.randint(flat.numel(), (1,), generator=gen))
            h = 1e-6

            def f(delta):
                q = OrderedDict((kk, vv.detach().clone()) for kk, vv in p64.items())
                q[k].view(-1)[idx] += delta
                return float(lm_loss(forward(kind, q, cfg, tokens, mask, pos)[0], tokens, mask)[0])
            num = (f(h) - f(-h)) / (2 * h)
            ana = float(g64[k].reshape(-1)[idx])
            # relative error, with |grad| floored at 1e-3 (FD noise is ~1e-10 absolute)
            worst_fd = max(worst_fd, abs(num - ana) / max(1e-3, abs(ana)))
        check('float64 grads = central finite differences (8 entries)', worst_fd < 1e-5,
              f'max |fd - autograd| / max(|g|, 1e-3) = {worst_fd:.1e}')
        check('float32 grads ~ float64 grads', rel32 < 1e-4, f'max abs err / max |g| = {rel32:.1e}')
        # value head grads by FD on score.weight entry (linear => exact-ish)
        hid64 = forward(kind, OrderedDict((k, v.double()) for k, v in p0.items()), cfg, tokens, mask, pos)[1]
        gsw = (vw.double()[..., None] * hid64).sum((0, 1))
        d = float((gsw.float() - exp['grad_values.score.weight'][0]).abs().max())
        check('grad_values.score.weight = sum(w * hidden)', d < 1e-4, f'max |d| {d:.1e}')

    if level == 'full':
        # torch AdamW vs a hand-written AdamW, the clip rule, clip vs unclipped
        g1 = {k: exp['grad.' + k] for k in p0}
        man1 = manual_adamw(p0, [g1])
        d1 = max(float((man1[k] - exp['adamw1.' + k]).abs().max()) for k in p0)
        p1 = leaf_params(exp_params(exp, 'adamw1', p0))
        l1, _ = lm_loss(forward(kind, p1, cfg, tokens, mask, pos)[0], tokens, mask)
        g2 = dict(zip(p1.keys(), torch.autograd.grad(l1, list(p1.values()))))
        man2 = manual_adamw(p0, [g1, g2])
        d2 = max(float((man2[k] - exp['adamw2.' + k]).abs().max()) for k in p0)
        check('torch AdamW (decay groups) = hand AdamW, steps 1 and 2', max(d1, d2) < 1e-6, f'{d1:.1e}, {d2:.1e}')
        tn = math.sqrt(sum(float((g.double() ** 2).sum()) for g in g1.values()))
        coef = min(1.0, CLIP / (tn + 1e-6))
        manc = manual_adamw(p0, [{k: g * coef for k, g in g1.items()}])
        dc = max(float((manc[k] - exp['clipped.' + k]).abs().max()) for k in p0)
        dn = abs(tn - float(exp['grad_norm'])) / tn
        diff = max(float((exp['clipped.' + k] - exp['adamw1.' + k]).abs().max()) for k in p0)
        check('grad_norm and clipped step = hand computation', dn < 1e-5 and dc < 1e-6,
              f'grad_norm {tn:.4f}, clip coef {coef:.4f}, |clipped - adamw1| max {diff:.1e}')
        nd = [k for k in p0 if not is_decayed(k, p0[k]) and p0[k].dim() >= 2]
        check('decay rule', True, 'no decay for ' + ', '.join(nd) if nd else 'all >=2-D decay')
    check('greedy: top-2 logit margin at every step', margin > 1e-3, f'min margin {margin:.3f}')
    return exp


def exp_params(exp, prefix, p0):
    return OrderedDict((k, exp[f'{prefix}.{k}']) for k in p0)


# --------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------
GPT2_CFG = OrderedDict(
    activation_function='gelu_new', architectures=['GPT2LMHeadModel'], attn_pdrop=0.0, bos_token_id=95,
    embd_pdrop=0.0, eos_token_id=95, initializer_range=0.02, layer_norm_epsilon=1e-5, model_type='gpt2',
    n_ctx=32, n_embd=48, n_head=4, n_inner=None, n_layer=2, n_positions=32, reorder_and_upcast_attn=False,
    resid_pdrop=0.0, scale_attn_by_inverse_layer_idx=False, scale_attn_weights=True, summary_activation=None,
    summary_first_dropout=0.0, summary_proj_to_labels=True, summary_type='cls_index', summary_use_proj=True,
    tie_word_embeddings=True, torch_dtype='float32', transformers_version='4.44.2', use_cache=True, vocab_size=96)

LLAMA_CFG = OrderedDict(
    architectures=['LlamaForCausalLM'], attention_bias=False, attention_dropout=0.0, bos_token_id=1,
    eos_token_id=2, head_dim=12, hidden_act='silu', hidden_size=48, initializer_range=0.02,
    intermediate_size=80, max_position_embeddings=64, mlp_bias=False, model_type='llama',
    num_attention_heads=4, num_hidden_layers=2, num_key_value_heads=2, pretraining_tp=1, rms_norm_eps=1e-6,
    rope_scaling=None, rope_theta=10000.0, tie_word_embeddings=False, torch_dtype='float32',
    transformers_version='4.44.2', use_cache=True, vocab_size=96)

QWEN2_CFG = OrderedDict(
    architectures=['Qwen2ForCausalLM'], attention_dropout=0.0, bos_token_id=94, eos_token_id=95,
    hidden_act='silu', hidden_size=32, initializer_range=0.02, intermediate_size=48,
    max_position_embeddings=64, max_window_layers=2, model_type='qwen2', num_attention_heads=4,
    num_hidden_layers=2, num_key_value_heads=1, rms_norm_eps=1e-6, rope_scaling=None, rope_theta=1000000.0,
    sliding_window=64, tie_word_embeddings=True, torch_dtype='float32', transformers_version='4.44.2',
    use_cache=True, use_sliding_window=False, vocab_size=96)

LLAMA3_CFG = OrderedDict(
    architectures=['LlamaForCausalLM'], attention_bias=False, attention_dropout=0.0, bos_token_id=93,
    eos_token_id=94, head_dim=32, hidden_act='silu', hidden_size=64, initializer_range=0.02,
    intermediate_size=48, max_position_embeddings=64, mlp_bias=False, model_type='llama',
    num_attention_heads=2, num_hidden_layers=1, num_key_value_heads=1, pretraining_tp=1, rms_norm_eps=1e-5,
    rope_scaling=OrderedDict(factor=8.0, high_freq_factor=4.0, low_freq_factor=1.0,
                             original_max_position_embeddings=16, rope_type='llama3'),
    rope_theta=500000.0, tie_word_embeddings=True, torch_dtype='float32', transformers_version='4.44.2',
    use_cache=True, vocab_size=96)

META = {'format': 'pt'}


def hidden_of(cfg):
    return cfg.get('n_embd') or cfg['hidden_size']


def write_model_dir(name, cfg, weights, score_w, expected, sharded=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, 'config.json'), cfg)
    if sharded is None:
        write_safetensors(os.path.join(d, 'model.safetensors'), weights, META)
    else:
        files = [f'model-{i + 1:05d}-of-{len(sharded):05d}.safetensors' for i in range(len(sharded))]
        wmap, total = {}, 0
        for fname, names in zip(files, sharded):
            part = OrderedDict((k, weights[k]) for k in names)
            write_safetensors(os.path.join(d, fname), part, META)
            for k, v in part.items():
                wmap[k] = fname
                total += v.numel() * v.element_size()
        assert set(wmap) == set(weights)
        write_json(os.path.join(d, 'model.safetensors.index.json'),
                   {'metadata': {'total_size': total}, 'weight_map': dict(sorted(wmap.items()))})
    write_safetensors(os.path.join(d, 'score.safetensors'), {'score.weight': score_w}, META)
    write_safetensors(os.path.join(d, 'expected.safetensors'), expected, META)


FORWARD_KEYS = ('tokens', 'attention_mask', 'position_ids', 'logits', 'logprobs', 'loss', 'score.weight',
                'values', 'value_weights', 'greedy')


def subset(exp, with_grads=False):
    keep = OrderedDict((k, v) for k, v in exp.items() if k in FORWARD_KEYS)
    if with_grads:
        keep.update((k, v) for k, v in exp.items() if k.startswith('grad.'))
    return keep


README_HEAD = """# Model fixtures

Generated by `scripts/make_model_fixtures.py` (run it with
`/usr/bin/python3 scripts/make_model_fixtures.py` from the repository root; it
needs PyTorch only and rewrites this whole folder, this file included). The
script holds a from-scratch float32 PyTorch implementation of Hugging Face's
eager `GPT2LMHeadModel`, `LlamaForCausalLM` and `Qwen2ForCausalLM`; the files
here are its outputs, so the engine tests need no Python.

## Directories

| dir | what |
| --- | --- |
| `gpt2-tiny` | GPT-2: vocab 96, n_positions 32, n_embd 48, 2 layers, 4 heads, gelu_new, LayerNorm eps 1e-5. Names `transformer.*`; `lm_head` tied to `wte` and absent from the file. |
| `gpt2-tiny-noprefix` | the same weights named without `transformer.` (as the original `gpt2` checkpoint), plus that checkpoint's causal-mask buffers `h.<i>.attn.bias` F32 [1,1,32,32] (lower-triangular ones). They are not parameters: a loader must ignore them. |
| `llama-tiny` | Llama: vocab 96, hidden 48, 2 layers, 4 heads (head_dim 12), 2 kv heads, intermediate 80, rms_norm_eps 1e-6, rope_theta 1e4, untied `lm_head.weight`. |
| `qwen2-tiny` | Qwen2: vocab 96, hidden 32, 2 layers, 4 heads (head_dim 8), 1 kv head, intermediate 48, rope_theta 1e6, q/k/v biases, no o_proj bias, tied. The config has no `attention_bias` (real Qwen2 configs don't); `model_type: qwen2` implies the biases. |
| `llama3-tiny` | Llama-3.2 style: vocab 96, hidden 64, 1 layer, 2 heads (head_dim 32), 1 kv head, intermediate 48, rms_norm_eps 1e-5, tied, rope_theta 5e5, `rope_scaling` llama3 (factor 8, low 1, high 4, original_max_position_embeddings 16). |
| `llama-tiny-sharded` | `llama-tiny`'s weights in two files + `model.safetensors.index.json` (`{"metadata": {"total_size": bytes}, "weight_map": {name: file}}`). |
| `llama-tiny-bf16` | `llama-tiny`'s weights rounded to nearest-even bfloat16, stored as BF16, `torch_dtype: bfloat16`. Expected values computed in float32 from the rounded weights. |

Every directory: `config.json`, the weights, `score.safetensors` (`score.weight`
F32 [1, hidden], a scalar head like AutoModelForSequenceClassification's, no
bias) and `expected.safetensors`. All safetensors files carry
`__metadata__: {"format": "pt"}`, sorted keys, a header space-padded to a
multiple of 8 and tensors packed back to back in name order.

## Inputs (in every expected.safetensors)

- `tokens` I32 [2,10]; row 1 is LEFT-padded by 3 with pad id 0.
- `attention_mask` I32 [2,10]: row 0 all ones, row 1 `0 0 0 1 1 1 1 1 1 1`.
- `position_ids` I32 [2,10]: `cumsum(mask) - 1` clipped at 0 (row 1: `0 0 0 0 1 2 3 4 5 6`).
  Pass them explicitly (also to GPT-2).

Attention: key j is visible to query i iff `j <= i` and `mask[j] == 1`
(HF eager: additive `finfo(float32).min` elsewhere). Outputs at pad QUERY
positions (`logits[1,0:3]`, `values[1,0:3]`, `logprobs[1,0:3]`) follow that
convention (a query that sees no key attends uniformly to all 10 keys): compare
only real positions. Nothing else depends on them.

## Outputs

| key | shape | meaning |
| --- | --- | --- |
| `logits` | F32 [2,10,V] | forward with the mask and positions above |
| `logprobs` | F32 [2,9] | `log_softmax(logits[:, t])[tokens[:, t+1]]`, t = 0..8 |
| `loss` | F32 [1] | see the loss rule |
| `grad.<name>` | as the weight | d loss / d param, same name and stored orientation as in the weights file (GPT-2 Conv1D [in, out], Linear [out, in]) |
| `adamw1.<name>`, `adamw2.<name>` | as the weight | params after AdamW steps 1 and 2 |
| `clipped.<name>` | as the weight | params after one AdamW step on clipped grads |
| `grad_norm` | F32 [1] | global L2 norm of all grads (of `loss`) before clipping |
| `score.weight` | F32 [1,H] | the scalar head (= score.safetensors) |
| `values` | F32 [2,10] | final normed hidden state (after ln_f / model.norm) @ score.weight^T |
| `value_weights` | F32 [2,10] | random, 0 at pad positions |
| `grad_values.<name>` | as the weight | d sum(values * value_weights) / d param, incl. `grad_values.score.weight` (an untied lm_head gets zeros) |
| `greedy` | I32 [2,16] | tokens + 6 greedy steps: full forward over everything so far, argmax of the last position's logits, no EOS stop; new tokens get mask 1 and position = row's previous max position + 1 |

`gpt2-tiny-noprefix` and `llama-tiny-sharded` carry only the forward-level keys
(`tokens attention_mask position_ids logits logprobs loss score.weight values
value_weights greedy`, identical to their base's); `llama-tiny-bf16` carries
those plus `grad.*`. The full set is in `gpt2-tiny`, `llama-tiny`,
`qwen2-tiny`, `llama3-tiny`.

`llama-tiny/long.safetensors` holds a longer batch for the engine's blocked
attention: `tokens` and `attention_mask` I32 [2,150] (row 1 left-padded by
20), `logprobs` F32 [2,149] and `grad.<name>` of the loss below on it.

### Loss rule

    valid[b,t] = mask[b,t] * mask[b,t+1]        t = 0..8 (input AND target are real tokens)
    loss = -sum_{b,t} valid[b,t] * logprobs[b,t] / sum_{b,t} valid[b,t]

One token-mean over the whole batch (9 + 6 = 15 terms here). It equals HF's
`CrossEntropyLoss(ignore_index=-100)` on shifted logits with
`labels[b,t] = -100` where `mask[b,t] == 0` or `mask[b,t-1] == 0`.

### AdamW and clipping

`torch.optim.AdamW(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)` with two groups:
weight_decay 0.1 for every parameter with >= 2 dims that is not an embedding
(`wte`, `wpe`, `embed_tokens`; an untied `lm_head.weight` decays, a tied one is
the embedding and does not), 0 for the rest (norm weights, all biases). The
loss is recomputed before each step. Per parameter, step t (from 1):

    p = p * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g ;  v = b2 * v + (1 - b2) * g^2
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

`clipped.*`: one step after `clip_grad_norm_(params, max_norm=0.05)`, i.e.
`g *= min(1, 0.05 / (grad_norm + 1e-6))` over all parameters together.

Tolerances: the float32 reference agrees with an independent float64
implementation to ~2e-6 on logits and its float32 grads with float64 grads to
~1e-6 of the largest grad, so an exact float32 engine should land within about
1e-4 absolute on logits/logprobs/values/loss and 1e-4 of max |g| on grads.

## Checks run by the script (this run)
"""


def write_readme():
    lines = [README_HEAD]
    lines += [f'- {"ok" if ok else "FAIL"}: {n}' + (f' ({d})' if d else '') for n, ok, d in CHECKS]
    lines += ['', '## Tensors per weights file', '',
              'Layer-indexed names are shown once with `<i>`.', '']
    import re
    for path in sorted(WRITTEN):
        rel = os.path.relpath(path, OUT)
        if os.path.basename(path) in ('expected.safetensors', 'score.safetensors'):
            continue
        seen = OrderedDict()
        for k, (dt, shape, _) in WRITTEN[path].items():
            g = re.sub(r'\.(h|layers)\.\d+\.', r'.\1.<i>.', '.' + k)[1:]
            seen.setdefault(g, f'{dt} {shape}')
        lines.append(f'`{rel}`:')
        lines.append('')
        lines += [f'    {g:52s} {v}' for g, v in seen.items()]
        lines.append('')
    lines += ['## Keys of each expected.safetensors', '']
    for path in sorted(WRITTEN):
        if os.path.basename(path) != 'expected.safetensors':
            continue
        rec = WRITTEN[path]
        fams = OrderedDict()
        for k, (dt, shape, _) in rec.items():
            fam = k.split('.')[0] + '.*' if k.split('.')[0] in ('grad', 'adamw1', 'adamw2', 'clipped', 'grad_values') else k
            fams.setdefault(fam, [0, dt, shape])[0] += 1
        desc = ', '.join(f'{f} ({n} tensors)' if f.endswith('.*') else f'{f} {dt} {shape}' for f, (n, dt, shape) in fams.items())
        lines.append(f'- `{os.path.relpath(path, OUT)}`: {desc}')
    lines.append('')
    with open(os.path.join(OUT, 'README.md'), 'w') as f:
        f.write('\n'.join(lines))


def main():
    t0 = time.time()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)

    def score_for(cfg, seed):
        g = torch.Generator().manual_seed(seed)
        return normal(g, (1, hidden_of(cfg)), 0.3)

    # 1-2. GPT-2
    gp = init_gpt2(GPT2_CFG, 1001)
    gs = score_for(GPT2_CFG, 1002)
    gexp = compute_expected('gpt2-tiny', 'gpt2', GPT2_CFG, gp, gs, 1003, 'full')
    write_model_dir('gpt2-tiny', GPT2_CFG, gp, gs, gexp)
    noprefix = OrderedDict((k[len('transformer.'):], v) for k, v in gp.items())
    P = GPT2_CFG['n_positions']
    for i in range(GPT2_CFG['n_layer']):
        noprefix[f'h.{i}.attn.bias'] = torch.tril(torch.ones(P, P)).view(1, 1, P, P)
    write_model_dir('gpt2-tiny-noprefix', GPT2_CFG, noprefix, gs, subset(gexp))

    # 3. Llama (+ 6. sharded, 7. bf16)
    lp = init_llama(LLAMA_CFG, 2001)
    ls = score_for(LLAMA_CFG, 2002)
    lexp = compute_expected('llama-tiny', 'llama', LLAMA_CFG, lp, ls, 2003, 'full')
    write_model_dir('llama-tiny', LLAMA_CFG, lp, ls, lexp)
    section('llama-tiny long')
    write_safetensors(os.path.join(OUT, 'llama-tiny', 'long.safetensors'), compute_long('llama', LLAMA_CFG, lp, 2004), META)
    first = [k for k in lp if k.startswith('model.embed_tokens.') or k.startswith('model.layers.0.')]
    rest = [k for k in lp if k not in first]
    write_model_dir('llama-tiny-sharded', LLAMA_CFG, lp, ls, subset(lexp), sharded=[first, rest])

    bcfg = OrderedDict(LLAMA_CFG, torch_dtype='bfloat16')
    bp = OrderedDict((k, v.to(torch.bfloat16)) for k, v in lp.items())
    bp32 = OrderedDict((k, v.float()) for k, v in bp.items())
    # independent round-to-nearest-even on the float32 bit patterns
    def rne(x):
        u = x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).to(torch.int32).to(torch.int16)
    rt = all(torch.equal(rne(lp[k]), bp[k].view(torch.int16)) for k in bp)
    rel = max(float(((bp32[k] - lp[k]).abs() / lp[k].abs().clamp_min(1e-30)).max()) for k in lp)
    bexp = compute_expected('llama-tiny-bf16', 'llama', bcfg, bp32, ls, 2003, 'grads')
    section('llama-tiny-bf16')
    check('bf16: torch rounding = bitwise round-to-nearest-even, rel err <= 2^-8', rt and rel <= 2 ** -8, f'max rel {rel:.2e}')
    dl = float((bexp['logits'] - lexp['logits']).abs().max())
    check('bf16 logits differ from f32 model (rounding matters)', dl > 1e-4, f'max |d| {dl:.2e}')
    write_model_dir('llama-tiny-bf16', bcfg, bp, ls, subset(bexp, with_grads=True))

    # 4. Qwen2
    qp = init_llama(QWEN2_CFG, 3001)
    qs = score_for(QWEN2_CFG, 3002)
    qexp = compute_expected('qwen2-tiny', 'llama', QWEN2_CFG, qp, qs, 3003, 'full')
    write_model_dir('qwen2-tiny', QWEN2_CFG, qp, qs, qexp)

    # 5. Llama 3 rope scaling
    l3p = init_llama(LLAMA3_CFG, 4001)
    l3s = score_for(LLAMA3_CFG, 4002)
    l3exp = compute_expected('llama3-tiny', 'llama', LLAMA3_CFG, l3p, l3s, 4003, 'full')
    write_model_dir('llama3-tiny', LLAMA3_CFG, l3p, l3s, l3exp)
    section('llama3-tiny')  # the scaling must change the outputs
    noscale = OrderedDict(LLAMA3_CFG, rope_scaling=None)
    tk, mk, ps, _ = make_inputs(4003, 96)
    d = float((forward('llama', l3p, noscale, tk, mk, ps)[0] - l3exp['logits']).abs().max())
    check('llama3-tiny: logits without rope_scaling differ', d > 1e-3, f'max |d| {d:.2e}')

    # reader test: every written file re-parsed and compared byte for byte
    section('safetensors')
    bad, total_tensors = [], 0
    for path, rec in WRITTEN.items():
        got, meta = read_safetensors(path)
        total_tensors += len(got)
        if meta != META or set(got) != set(rec):
            bad.append(path)
            continue
        for k, (dt, shape, b) in rec.items():
            g = got[k]
            if g[0] != dt or g[1] != shape or g[2] != b:
                bad.append(f'{path}:{k}')
        # values decode back to the same numbers
        for k, (dt, shape, b) in got.items():
            if dt == 'F32':
                t = torch.frombuffer(bytearray(b), dtype=torch.float32).reshape(shape)
            elif dt == 'I32':
                t = torch.frombuffer(bytearray(b), dtype=torch.int32).reshape(shape)
            else:
                t = torch.frombuffer(bytearray(b), dtype=torch.int16).view(torch.bfloat16).reshape(shape)
            if tensor_bytes(t) != b:
                bad.append(f'{path}:{k} decode')
    check(f'{len(WRITTEN)} files, {total_tensors} tensors re-read byte-exactly', not bad, ', '.join(bad[:5]))
    idx = json.load(open(os.path.join(OUT, 'llama-tiny-sharded', 'model.safetensors.index.json')))
    shards = {}
    for k, f in idx['weight_map'].items():
        shards.setdefault(f, {})[k] = read_safetensors(os.path.join(OUT, 'llama-tiny-sharded', f))[0][k]
    whole = read_safetensors(os.path.join(OUT, 'llama-tiny', 'model.safetensors'))[0]
    same = all(whole[k] == shards[idx['weight_map'][k]][k] for k in whole) and len(idx['weight_map']) == len(whole)
    size = sum(len(v[2]) for v in whole.values())
    check('sharded = llama-tiny tensor for tensor, total_size right', same and size == idx['metadata']['total_size'],
          f'total_size {size}')

    write_readme()
    total = 0
    print('files:')
    for dp, _, fs in sorted(os.walk(OUT)):
        for fn in sorted(fs):
            s = os.path.getsize(os.path.join(dp, fn))
            total += s
            print(f'  {os.path.relpath(os.path.join(dp, fn), OUT):52s} {s:9d}')
    print(f'total {total} bytes; {time.time() - t0:.1f}s')
    failed = [c for c in CHECKS if not c[1]]
    print(f'{len(CHECKS) - len(failed)} checks passed, {len(failed)} failed')
    if failed:
        sys.exit(1)


if __name__ == '__main__':
    main()
