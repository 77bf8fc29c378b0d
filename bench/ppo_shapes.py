#!/usr/bin/env python3
"""The shapes of each stage of one PPO step (the step of bench/torch_trainers.py
and of rlfarm's PPO trainer), from its sizes alone: no torch needed.
torch_trainers.py asserts its tensors against these as it runs; check-cuda
(scripts/check-cuda.mjs) runs this file on any machine and compares it with
the shapes rlfarm's trainer reports for the same sizes.

  python3 bench/ppo_shapes.py --batch 64 --prompt 17 --response 64 --minibatch 16 --epochs 2
"""
import argparse
import json


def ppo_shapes(batch, prompt, response, minibatch, epochs):
    """Stage name -> shape; 'updates' is the number of minibatch updates."""
    if min(batch, prompt, response, minibatch, epochs) < 1:
        raise ValueError("batch, prompt, response, minibatch and epochs must be >= 1")
    return {
        "sequences": [batch, prompt + response],
        "old_logprobs": [batch, response],
        "ref_logprobs": [batch, response],
        "scores": [batch],
        "values": [batch, response],
        "rewards": [batch, response],
        "advantages": [batch, response],
        "returns": [batch, response],
        "minibatch": [min(minibatch, batch), prompt + response],
        "updates": epochs * -(-batch // minibatch),
    }


def main():
    p = argparse.ArgumentParser()
    for name in ["batch", "prompt", "response", "minibatch", "epochs"]:
        p.add_argument(f"--{name}", type=int, required=True)
    a = p.parse_args()
    print(json.dumps(ppo_shapes(a.batch, a.prompt, a.response, a.minibatch, a.epochs)))


if __name__ == "__main__":
    main()
