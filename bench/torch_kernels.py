#!/usr/bin/env python3
"""The peer for bench/kernels.ts: the same ops written the way TRL writes them,
in PyTorch eager, timed on the same inputs sizes. Prints one JSON line.

  python3 bench/torch_kernels.py --device cpu --threads 1 --repeat 7
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def logprobs_from_logits(logits, labels):
    # TRL: log_softmax then gather
    logp = F.log_softmax(logits, dim=-1)
    return torch.gather(logp, -1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits):
    # TRL: logsumexp(logits) - sum(softmax(logits) * logits)
    pd = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)


def gae(rewards, values, gamma=1.0, lam=0.95):
    # TRL's PPO: the Python loop over time steps
    lastgaelam = 0
    advantages_reversed = []
    gen_len = rewards.shape[1]
    for t in reversed(range(gen_len)):
        nextvalues = values[:, t + 1] if t < gen_len - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    returns = advantages + values
    return advantages, returns


def timed(fn, repeat, device):
    times = []
    for _ in range(repeat + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run warms up


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=512)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    logits = torch.randn(args.rows, args.vocab, device=dev) * 2
    labels = torch.randint(0, args.vocab, (args.rows,), device=dev)
    rewards = torch.randn(args.batch, args.steps, device=dev)
    values = torch.randn(args.batch, args.steps, device=dev)
    out = {
        "torch": torch.__version__,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "threads": torch.get_num_threads(),
        "logprobs_ms": 1e3 * timed(lambda: logprobs_from_logits(logits, labels), args.repeat, args.device),
        "logprobs_entropy_ms": 1e3 * timed(
            lambda: (logprobs_from_logits(logits, labels), entropy_from_logits(logits)), args.repeat, args.device
        ),
        "gae_ms": 1e3 * timed(lambda: gae(rewards, values), args.repeat, args.device),
    }
    if args.device == "cuda":
        big = torch.empty(args.rows * args.vocab, device=dev)
        seconds = timed(lambda: big.clone(), args.repeat, args.device)
        out["copy_gbps"] = 2 * big.numel() * 4 / seconds / 1e9
    print(json.dumps(out))


if __name__ == "__main__":
    main()
