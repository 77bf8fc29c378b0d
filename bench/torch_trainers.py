#!/usr/bin/env python3
"""The peer for bench/trainers.ts: a PPO step and a DPO step written the way
TRL writes them (PPOTrainer, DPOTrainer), in eager PyTorch, on the GPT-2 of
bench/torch_train.py, with the shapes rlfarm's run had. Prints one JSON line
with the step times.

  OPENBLAS_NUM_THREADS=2 python3 bench/torch_trainers.py --vocab 259 --layers 4 --dim 256 --heads 4 \\
      --batch 16 --prompt 17 --response 48 --minibatch 8 --epochs 2 --dpo-length 66 --dpo-response 49 --steps 6 --threads 1

PPO step: sample `response` tokens for each of `batch` prompts (KV cache,
multinomial at temperature 1, no early stop); the reward model's score at the
last token; old-policy and reference log-probs and the value model's values
without gradients; per-token KL penalty (k1) plus the score at the last token;
GAE over the response; whitened advantages; `epochs` passes of minibatches,
each a policy forward/backward (clipped ratio loss; entropy measured without
gradients, as TRL logs it), clip_grad_norm_(1) and AdamW, then the value
model's forward/backward (clipped value loss), clip and AdamW. The value model
starts as a copy of the reward model.

DPO step: the policy's forward over the batch's chosen and rejected rows
concatenated, log-probs summed over response tokens, the sigmoid loss against
reference sums computed once before training (rlfarm computes them once too),
backward, clip_grad_norm_(1), AdamW.

--device cuda puts everything on the GPU (torch.set_default_device) and
synchronizes before each clock reading; --autocast-bf16 runs the forward
passes under torch.autocast(bfloat16). The shapes each stage of the PPO step
must have are ppo_shapes.py's (asserted here as the step runs; check-cuda runs
that file without torch).
"""
import argparse
import contextlib
import copy
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ppo_shapes import ppo_shapes
from torch_train import Model


class ScalarModel(nn.Module):
    """A reward or value model: the transformer and a [1, dim] head on every position."""

    def __init__(self, a):
        super().__init__()
        self.body = Model(a)
        self.score = nn.Linear(a.dim, 1, bias=False)

    def forward(self, tokens):
        return self.score(self.body.hidden(tokens)).squeeze(-1)


def token_logprobs(logits, tokens):
    """log p(tokens[:, t + 1] | tokens[:, :t + 1]) from full-sequence logits: [B, T - 1]."""
    logp = F.log_softmax(logits[:, :-1], dim=-1)
    return logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def whiten(x, mask):
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


@torch.no_grad()
def sample(policy, prompts, new_tokens):
    caches = [[None, None] for _ in policy.blocks]
    logits = policy(prompts, 0, caches)[:, -1]
    out = [prompts]
    for s in range(new_tokens):
        nxt = torch.multinomial(F.softmax(logits, dim=-1), 1)
        out.append(nxt)
        if s + 1 < new_tokens:
            logits = policy(nxt, prompts.shape[1] + s, caches)[:, -1]
    return torch.cat(out, dim=1)


def optimizer_step(model, opt, loss):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def check_shape(name, tensor, want):
    if list(tensor.shape) != want[name]:
        raise RuntimeError(f"{name}: shape {list(tensor.shape)}, ppo_shapes.py says {want[name]}")


def ppo_step(a, policy, reference, reward, value, policy_opt, value_opt, prompts):
    B, P = prompts.shape
    want = ppo_shapes(B, P, a.response, a.minibatch, a.epochs)
    with AUTOCAST():
        seq = sample(policy, prompts, a.response)
    check_shape("sequences", seq, want)
    R = a.response
    with torch.no_grad(), AUTOCAST():
        old = token_logprobs(policy(seq), seq)[:, P - 1:]
        ref = token_logprobs(reference(seq), seq)[:, P - 1:]
        score = reward(seq)[:, -1].float()
        old_values = value(seq)[:, P - 1:-1].float()
        rewards = -a.kl_coef * (old - ref)
        rewards[:, -1] += score
        advantages = torch.zeros(B, R)
        last = torch.zeros(B)
        for t in reversed(range(R)):
            next_value = old_values[:, t + 1] if t + 1 < R else 0.0
            delta = rewards[:, t] + a.gamma * next_value - old_values[:, t]
            last = delta + a.gamma * a.lam * last
            advantages[:, t] = last
        returns = advantages + old_values
        mask = torch.ones(B, R)
        advantages = whiten(advantages, mask)
    for name, x in [("old_logprobs", old), ("ref_logprobs", ref), ("scores", score), ("values", old_values),
                    ("rewards", rewards), ("advantages", advantages), ("returns", returns)]:
        check_shape(name, x, want)
    updates = 0
    for _ in range(a.epochs):
        order = torch.randperm(B)
        for start in range(0, B, a.minibatch):
            idx = order[start:start + a.minibatch]
            tokens, mb_mask = seq[idx], mask[idx]
            if updates == 0:  # the first minibatch (a last one may be smaller)
                check_shape("minibatch", tokens, want)
            updates += 1
            with AUTOCAST():
                logits = policy(tokens).float()
            logp = token_logprobs(logits, tokens)[:, P - 1:]
            ratio = torch.exp(logp - old[idx])
            adv = advantages[idx]
            loss = masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - a.clip, 1 + a.clip)), mb_mask)
            with torch.no_grad():  # the entropy TRL logs (rlfarm measures it too); it is not in the loss
                response_logits = logits[:, P - 1:-1]
                probs = F.softmax(response_logits, dim=-1)
                entropy = torch.logsumexp(response_logits, dim=-1) - (probs * response_logits).sum(-1)
                logged_entropy = masked_mean(entropy, mb_mask)  # noqa: F841
            optimizer_step(policy, policy_opt, loss)

            with AUTOCAST():
                v = value(tokens)[:, P - 1:-1].float()
            clipped = old_values[idx] + (v - old_values[idx]).clamp(-a.value_clip, a.value_clip)
            value_loss = 0.5 * masked_mean(torch.max((v - returns[idx]) ** 2, (clipped - returns[idx]) ** 2), mb_mask)
            optimizer_step(value, value_opt, a.value_coef * value_loss)
    if updates != want["updates"]:
        raise RuntimeError(f"{updates} minibatch updates, ppo_shapes.py says {want['updates']}")


def dpo_step(a, policy, opt, chosen, rejected, ref_chosen, ref_rejected):
    B = chosen.shape[0]
    tokens = torch.cat([chosen, rejected])
    logp = token_logprobs(policy(tokens), tokens)
    sums = logp[:, -a.dpo_response:].sum(-1)
    margin = (sums[:B] - ref_chosen) - (sums[B:] - ref_rejected)
    loss = -F.logsigmoid(a.beta * margin).mean()
    optimizer_step(policy, opt, loss)


AUTOCAST = contextlib.nullcontext
SYNC = lambda: None  # noqa: E731


def timed(steps, fn):
    times = []
    for step in range(steps + 1):
        SYNC()
        start = time.perf_counter()
        fn()
        SYNC()
        if step > 0:  # the first step warms up
            times.append(time.perf_counter() - start)
    return times


def main():
    p = argparse.ArgumentParser()
    for name, default in [("vocab", 259), ("layers", 4), ("dim", 256), ("heads", 4), ("batch", 16), ("prompt", 17),
                          ("response", 48), ("minibatch", 8), ("epochs", 2), ("dpo-length", 66), ("dpo-response", 49),
                          ("steps", 6), ("threads", 1)]:
        p.add_argument(f"--{name}", type=int, default=default)
    for name, default in [("kl-coef", 0.05), ("gamma", 1.0), ("lam", 0.95), ("clip", 0.2), ("value-clip", 0.2),
                          ("value-coef", 0.1), ("beta", 0.1), ("lr", 1e-5)]:
        p.add_argument(f"--{name}", type=float, default=default)
    p.add_argument("--device", default="cpu")
    p.add_argument("--autocast-bf16", action="store_true")
    a = p.parse_args()
    global AUTOCAST, SYNC
    torch.set_default_device(a.device)
    if a.device.startswith("cuda"):
        SYNC = torch.cuda.synchronize
    if a.autocast_bf16:
        AUTOCAST = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    # What torch_train.Model reads.
    a.arch, a.kv_heads, a.gen_prompt, a.gen_tokens = "gpt2", a.heads, 0, 0
    a.ctx = max(a.prompt + a.response, a.dpo_length)
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # as bench/torch_train.py: the setting that serves torch best
    torch.manual_seed(0)

    policy = Model(a)
    reference = copy.deepcopy(policy).requires_grad_(False)
    reward = ScalarModel(a).requires_grad_(False)
    value = copy.deepcopy(reward).requires_grad_(True)
    policy_opt = torch.optim.AdamW(policy.parameters(), lr=a.lr, weight_decay=0.0)
    value_opt = torch.optim.AdamW(value.parameters(), lr=a.lr, weight_decay=0.0)
    prompts = torch.randint(0, a.vocab, (a.batch, a.prompt))
    ppo = timed(a.steps, lambda: ppo_step(a, policy, reference, reward, value, policy_opt, value_opt, prompts))

    policy = Model(a)
    opt = torch.optim.AdamW(policy.parameters(), lr=a.lr, weight_decay=0.0)
    chosen = torch.randint(0, a.vocab, (a.batch, a.dpo_length))
    rejected = torch.randint(0, a.vocab, (a.batch, a.dpo_length))
    with torch.no_grad():
        ref_sums = token_logprobs(policy(torch.cat([chosen, rejected])), torch.cat([chosen, rejected]))[:, -a.dpo_response:].sum(-1)
    dpo = timed(a.steps, lambda: dpo_step(a, policy, opt, chosen, rejected, ref_sums[:a.batch], ref_sums[a.batch:]))

    print(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(), "device": a.device,
        "ppo_step_ms": statistics.median(ppo) * 1e3, "ppo_fastest_step_ms": min(ppo) * 1e3,
        "dpo_step_ms": statistics.median(dpo) * 1e3, "dpo_fastest_step_ms": min(dpo) * 1e3,
    }))


if __name__ == "__main__":
    main()
