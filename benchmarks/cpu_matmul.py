"""Matrix products on this CPU, one thread: is bf16 a lever, and which weight layout does a decode step want?

    OMP_NUM_THREADS=1 python -m benchmarks.cpu_matmul [--reps 30] [--decode-reps 10]

Prints, as JSON, the CPU's model name, whether torch sees native bf16 units (AVX512-BF16, AMX), and:
* GFLOP/s of a (512 x 576) @ (576 x 1536) product (512 prompt tokens through SmolLM2's MLP up-projection) in each
  dtype: median and range over `--reps`. On the AMD EPYC this project started on, bf16 ran at a ninth of fp32; on
  a Xeon with AMX it runs several times faster (docs/performance.md), which is what
  `DecodeLoop(dense_copy="bfloat16")` is for.
* the linear layers of one SmolLM2-135M decode step (every weight matrix of the 30 layers and the output layer,
  each its own tensor, so they stream from memory as in a real step) for 4 to 64 rows, in ms, per weight layout:
  row-major (`nn.Linear` as built), column-major (`dense_copy.store_column_major`) and oneDNN's packed linear
  (`torch.utils.mkldnn`); fp32 and bf16.
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
LAYER = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
"""(out, in) of SmolLM2-135M's linear layers in one decoder layer: q, k, v, o, gate, up, down."""
DECODE_WEIGHTS = LAYER * 30 + [(49152, 576)]
"""Every weight matrix a decode step multiplies by: 30 layers and the output layer."""
DECODE_ROWS = (4, 8, 9, 13, 16, 64)
"""Rows of a decode step: a GRPO-shape rollout decodes 16 (2 prompts x 8 samples), fewer as samples finish; an
evaluation decodes up to a whole set's rows. Odd counts matter: MKL's fp32 GEMM of a row-major weight is slow
at some."""


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


def decode_step_ms(layout: str, dtype: torch.dtype, reps: int) -> dict[int, list[float]]:
    """Rows -> the linear layers of one decode step of that many rows, in ms per pass, with every weight stored in
    `layout`."""
    import torch.utils.mkldnn

    from tl_lightning.models.dense_copy import store_column_major

    layers = torch.nn.ModuleList(torch.nn.Linear(k, n, bias=False, dtype=dtype) for n, k in DECODE_WEIGHTS)
    if layout == "column-major":
        store_column_major(layers)
    elif layout == "onednn":
        layers = [torch.utils.mkldnn.MkldnnLinear(layer, dtype) for layer in layers]
    times = {rows: [] for rows in DECODE_ROWS}
    with torch.no_grad():
        for rep in range(reps + 1):
            for rows in DECODE_ROWS:
                inputs = {k: torch.randn(rows, k, dtype=dtype) for k in {k for _, k in DECODE_WEIGHTS}}
                start = time.perf_counter()
                for layer, (_, k) in zip(layers, DECODE_WEIGHTS):
                    layer(inputs[k])
                if rep:  # the first pass warms up
                    times[rows].append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--decode-reps", type=int, default=10)
    args = parser.parse_args()
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
           "avx512_bf16": torch.cpu._is_avx512_bf16_supported(), "amx": torch.cpu._is_amx_tile_supported()}
    for dtype in (torch.float32, torch.bfloat16):
        r = gflops(dtype, args.reps)
        out[str(dtype).removeprefix("torch.")] = {"gflops_median": round(statistics.median(r), 1),
                                                  "range": [round(min(r), 1), round(max(r), 1)]}
    out["bf16_over_fp32"] = round(out["bfloat16"]["gflops_median"] / out["float32"]["gflops_median"], 2)
    out["decode_step_linear_ms"] = {}
    for dtype in (torch.float32, torch.bfloat16):
        for layout in ("row-major", "column-major", "onednn"):  # interleaving would hold 6 copies of the weights
            for rows, r in decode_step_ms(layout, dtype, args.decode_reps).items():
                out["decode_step_linear_ms"][f"{str(dtype).removeprefix('torch.')} {layout} {rows} rows"] = {
                    "median": round(statistics.median(r), 1), "range": [round(min(r), 1), round(max(r), 1)]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
