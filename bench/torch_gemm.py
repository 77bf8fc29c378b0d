#!/usr/bin/env python3
"""The peer for bench/gemm.ts: torch.matmul (torch.bmm for a batch) on the same
shapes and memory layouts, the transposed operand passed as a transposed view
(no copy, as a model's backward pass does). Prints one JSON line.

  OPENBLAS_NUM_THREADS=2 python3 bench/torch_gemm.py --threads 1 --repeat 7 \
      --shapes '[{"name": "fwd", "batch": 0, "M": 2048, "N": 768, "K": 256, "transA": false, "transB": true}]'

batch 0 means a single 2-D product.
"""
import argparse
import json
import statistics
import time

import torch


def operand(rows, cols, transposed, batch):
    """A rows x cols operand stored as rlfarm stores it: [cols, rows] when transposed."""
    shape = (cols, rows) if transposed else (rows, cols)
    if batch:
        stored = torch.randn(batch, *shape)
        return stored.transpose(1, 2) if transposed else stored
    stored = torch.randn(*shape)
    return stored.t() if transposed else stored


def median_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--shapes", required=True, help="JSON list of {name, batch, M, N, K, transA, transB, repeat?}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    for s in json.loads(args.shapes):
        batch = s["batch"]
        a = operand(s["M"], s["K"], s["transA"], batch)
        b = operand(s["K"], s["N"], s["transB"], batch)
        c = torch.empty(batch, s["M"], s["N"]) if batch else torch.empty(s["M"], s["N"])
        if batch:
            run = lambda: torch.bmm(a, b, out=c)  # noqa: E731
        else:
            run = lambda: torch.matmul(a, b, out=c)  # noqa: E731
        results[s["name"]] = median_ms(run, s.get("repeat", args.repeat))
        del a, b, c
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "ms": results}))


if __name__ == "__main__":
    main()
