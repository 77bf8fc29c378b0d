#!/usr/bin/env python3
"""The bf16 matrix-multiply rate of the GPU at hand, through torch.matmul
(cuBLAS): the denominator of the MFU that scripts/check-cuda.mjs reports.
Mean of ten timed products after three warm-ups, random data. Prints one JSON line.

  python3 bench/torch_peak.py [--size 8192]
"""
import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=8192)
    a = p.parse_args()
    n = a.size
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        x @ y
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        x @ y
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / 10
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "size": n,
                      "bf16_tflops": 2 * n ** 3 / seconds / 1e12}))


if __name__ == "__main__":
    main()
