#!/usr/bin/env python3
"""The peer for bench/train.ts: the same GPT-2 / Llama shapes written the way
Hugging Face writes them (eager PyTorch modules), trained with AdamW on
next-token cross-entropy, and generating with a KV cache. Prints one JSON line.

  OPENBLAS_NUM_THREADS=2 python3 bench/torch_train.py --arch gpt2 --layers 4 --dim 256 --heads 4 --ctx 128 --batch 16 --vocab 256 --threads 1

--device cuda puts everything on the GPU (torch.set_default_device) and
synchronizes before each clock reading; --autocast-bf16 runs the forward
passes under torch.autocast(bfloat16), the peer of rlfarm's bf16 precision.
"""
import contextlib
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class GPT2Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def attention(self, x, cache=None):
        B, T, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (y.view(B, T, self.heads, d // self.heads).transpose(1, 2) for y in (q, k, v))
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        Tk = k.size(2)
        mask = torch.ones(T, Tk, dtype=torch.bool).tril(Tk - T)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        y = F.softmax(scores, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, d))

    def forward(self, x, cache=None):
        x = x + self.attention(self.ln_1(x), cache)
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp_proj(h)


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, d, heads, kv_heads, hidden):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.input_layernorm = RMSNorm(d)
        self.q_proj = nn.Linear(d, heads * self.hd, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(heads * self.hd, d, bias=False)
        self.post_attention_layernorm = RMSNorm(d)
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x, cos, sin, cache=None):
        B, T, d = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        rep = self.heads // self.kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
        Tk = k.size(2)
        mask = torch.ones(T, Tk, dtype=torch.bool).tril(Tk - T)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o_proj(y)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.arch = a.arch
        self.wte = nn.Embedding(a.vocab, a.dim)
        if a.arch == "gpt2":
            self.wpe = nn.Embedding(max(a.ctx, a.gen_prompt + a.gen_tokens), a.dim)
            self.blocks = nn.ModuleList(GPT2Block(a.dim, a.heads) for _ in range(a.layers))
            self.ln_f = nn.LayerNorm(a.dim, eps=1e-5)
        else:
            hidden = math.ceil(8 * a.dim / 3 / 32) * 32
            self.blocks = nn.ModuleList(LlamaBlock(a.dim, a.heads, a.kv_heads, hidden) for _ in range(a.layers))
            self.ln_f = RMSNorm(a.dim)
            hd = a.dim // a.heads
            self.inv_freq = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))

    def forward(self, tokens, start=0, caches=None):
        return self.hidden(tokens, start, caches) @ self.wte.weight.T  # tied head

    def hidden(self, tokens, start=0, caches=None):
        """The final normed hidden states [B, T, dim]."""
        B, T = tokens.shape
        pos = torch.arange(start, start + T)
        x = self.wte(tokens)
        if self.arch == "gpt2":
            x = x + self.wpe(pos)
            for i, blk in enumerate(self.blocks):
                x = blk(x, None if caches is None else caches[i])
        else:
            freqs = pos[:, None].float() * self.inv_freq[None]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
            for i, blk in enumerate(self.blocks):
                x = blk(x, cos, sin, None if caches is None else caches[i])
        return self.ln_f(x)


def main():
    p = argparse.ArgumentParser()
    for name, default in [("layers", 4), ("dim", 256), ("heads", 4), ("kv-heads", 0), ("ctx", 128), ("batch", 16), ("vocab", 256),
                          ("steps", 10), ("threads", 1), ("gen-batch", 64), ("gen-prompt", 16), ("gen-tokens", 64)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--arch", default="gpt2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--autocast-bf16", action="store_true")
    a = p.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    torch.set_default_device(a.device)
    cuda = a.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if a.autocast_bf16 else contextlib.nullcontext
    torch.set_num_threads(a.threads)
    # Denormal floats (from exp of very negative logits) made some backward
    # passes 7x slower here; flushing them is the setting that serves torch best.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = Model(a)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    times = []
    for step in range(a.steps + 1):
        tokens = torch.randint(0, a.vocab, (a.batch, a.ctx))
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast():
            logits = model(tokens)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, a.vocab).float(), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        if step > 0:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": a.device, "step_ms": step_s * 1e3,
           "tokens_per_second": a.batch * a.ctx / step_s, "fastest_step_ms": min(times) * 1e3}
    if a.gen_tokens > 0:
        prompts = torch.randint(0, a.vocab, (a.gen_batch, a.gen_prompt))
        gen_times = []
        with torch.no_grad(), autocast():
            for _ in range(2):
                caches = [[None, None] for _ in range(a.layers)]
                sync()
                start = time.perf_counter()
                logits = model(prompts, 0, caches)[:, -1]
                for s in range(a.gen_tokens):
                    nxt = torch.multinomial(F.softmax(logits, dim=-1), 1)
                    if s + 1 == a.gen_tokens:
                        break
                    logits = model(nxt, a.gen_prompt + s, caches)[:, -1]
                sync()
                gen_times.append(time.perf_counter() - start)
        gen_s = min(gen_times[1:] or gen_times)
        out["generate_ms"] = gen_s * 1e3
        out["generate_tokens_per_second"] = a.gen_batch * a.gen_tokens / gen_s
    print(json.dumps(out))


if __name__ == "__main__":
    main()
