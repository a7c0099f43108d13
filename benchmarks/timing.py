"""The timing loop every micro-benchmark here shares.

Why one helper: the benchmarks compare numbers across files (the sampler
against the roofline of its products and its attention), so they must time
the same way: a warm-up call that pays compilation and allocation, then
`reps` calls of a function that blocks until the device is done, reduced by
the minimum (the least-disturbed run; what the decode benchmarks report)
or the median (what forward and train-step throughput report).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def seconds(fn: Callable[[], object], reps: int, *, reduce: str = "min", warmup: bool = True,
            calls_per_fn: int = 1) -> float:
    """Seconds per call of `fn` over `reps` timed runs.

    `fn` must block until its result is ready (wrap it in
    `jax.block_until_ready`). `calls_per_fn` divides each run's time, for a
    fn that runs the measured program that many times (a loop of decode
    steps). Raises ValueError on reps < 1 or an unknown `reduce`."""
    if reps < 1:
        raise ValueError(f"reps={reps} must be >= 1")
    if reduce not in ("min", "median"):
        raise ValueError(f"reduce={reduce!r} must be 'min' or 'median'")
    if warmup:
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) / calls_per_fn)
    return min(times) if reduce == "min" else statistics.median(times)
