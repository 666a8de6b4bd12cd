"""Latency of torch eager fp32, ORT fp32 and ORT int8 at given batch sizes and thread counts.

Each figure is the median of repeated calls after one warm-up, repeated until a small time
budget is spent (at least two calls), so a batch of 32 on a slow CPU stays affordable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cossl_edge.export.verify import session
from cossl_edge.runtime import metadata as mm


def median_ms(call: Callable[[], object], budget_s: float = 1.0, min_runs: int = 2,
              max_runs: int = 200) -> float:
    call()  # warm-up: first-call allocations and kernel selection
    times: list[float] = []
    spent = 0.0
    while len(times) < min_runs or (spent < budget_s and len(times) < max_runs):
        t0 = time.perf_counter()
        call()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return float(np.median(times) * 1000.0)


def torch_call(model: nn.Module, x: np.ndarray) -> Callable[[], object]:
    tensor = torch.from_numpy(x)

    def call() -> object:
        with torch.inference_mode():
            return model(tensor)
    return call


def ort_call(path: Path, x: np.ndarray, threads: int) -> Callable[[], object]:
    sess = session(path, threads)
    return lambda: sess.run([mm.OUTPUT], {mm.INPUT: x})


def measure(model: nn.Module, files: dict[str, Path], shape: tuple[int, int, int],
            batches: tuple[int, ...] = (1, 32), budget_s: float = 1.0) -> list[dict]:
    """Rows ``{engine, batch, threads, ms}`` for torch fp32 and each ONNX file in ``files``."""
    all_threads = os.cpu_count() or 1
    rng = np.random.default_rng(0)
    saved_threads = torch.get_num_threads()
    rows = []
    try:
        for batch in batches:
            x = rng.standard_normal((batch, *shape)).astype(np.float32)
            for threads in sorted({1, all_threads}):
                torch.set_num_threads(threads)
                calls = {"torch-fp32": torch_call(model, x)}
                calls |= {name: ort_call(p, x, threads) for name, p in files.items()}
                for engine, call in calls.items():
                    rows.append({"engine": engine, "batch": batch, "threads": threads,
                                 "ms": round(median_ms(call, budget_s), 3)})
    finally:
        torch.set_num_threads(saved_threads)
    return rows
