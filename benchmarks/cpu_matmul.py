"""Is bf16 a lever on this CPU? fp32 against bf16 matrix products at SmolLM2-135M's prefill shape, one thread.

    OMP_NUM_THREADS=1 python -m benchmarks.cpu_matmul [--reps 30]

Prints, as JSON, the CPU's model name, whether torch sees native bf16 units (AVX512-BF16, AMX), and GFLOP/s of a
(512 x 576) @ (576 x 1536) product (512 prompt tokens through SmolLM2's MLP up-projection) in each dtype: median
and range over `--reps`. On the AMD EPYC this project started on, bf16 ran at a ninth of fp32; on a Xeon with AMX
it runs several times faster (docs/performance.md), which is what `DecodeLoop(dense_copy="bfloat16")` is for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

SHAPE = (512, 576, 1536)
"""(tokens, hidden, intermediate) of SmolLM2-135M's MLP at a 512-token prefill."""


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def gflops(dtype: torch.dtype, reps: int) -> list[float]:
    m, k, n = SHAPE
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):  # warm-up: oneDNN picks and caches its kernel
        a @ b
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        rates.append(2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
           "avx512_bf16": torch.cpu._is_avx512_bf16_supported(), "amx": torch.cpu._is_amx_tile_supported()}
    for dtype in (torch.float32, torch.bfloat16):
        r = gflops(dtype, args.reps)
        out[str(dtype).removeprefix("torch.")] = {"gflops_median": round(statistics.median(r), 1),
                                                  "range": [round(min(r), 1), round(max(r), 1)]}
    out["bf16_over_fp32"] = round(out["bfloat16"]["gflops_median"] / out["float32"]["gflops_median"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
