"""Training logs: `metrics.jsonl`, TensorBoard events, a console bar, timers.

Why one module: the trainer should make one call per step (`logger.log`) and
not care which sinks exist. Every sink writes from process 0 only: on a pod
all hosts run the same loop and see the same (globally reduced) metrics, so
N copies of each row would only race on a shared filesystem.

`metrics.jsonl` is the source of truth for reports. A resumed run appends
rows again for the steps after its checkpoint, so `read_metrics` keeps the
last row written for each step. Non-finite numbers are written as Python's
`NaN` / `Infinity` tokens (a NaN loss is a signal worth keeping); `json` and
pandas read them, strict parsers may not.

Timing: JAX dispatches asynchronously, so a phase timer measures wall time
only up to the last *blocking* call inside it. Put `jax.block_until_ready`
(or a host transfer of the outputs) inside the phase you want measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tensorboard"
# Phases the trainer reports; others are accepted, these are just the names
# the README explains.
PHASES = ("rollout", "grading", "e_step", "m_step", "checkpoint", "eval")


def _is_main_process() -> bool:
    import jax  # Imported late: reading or plotting logs needs no JAX.

    return jax.process_index() == 0


def to_python(value: Any) -> Any:
    """Converts jax/numpy scalars and small arrays to JSON-able Python values.

    Raises TypeError for values that are neither numbers, strings, bools,
    None nor arrays, so a stray object in the metrics dict fails loudly at
    the step that logged it instead of corrupting the file.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (list, tuple, np.generic, np.ndarray)) or hasattr(value, "__array__"):
        arr = np.asarray(value)  # Blocks on a jax.Array: metrics are small.
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"metric array of dtype {arr.dtype} is not numeric")
        return arr.item() if arr.ndim == 0 else arr.tolist()
    raise TypeError(f"cannot log a metric of type {type(value).__name__}: {value!r}")


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested dicts to `a/b` keys (TensorBoard groups on `/`)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}/"))
        else:
            flat[name] = to_python(value)
    return flat


def _format_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.3e}"


class Timer:
    """Accumulates wall seconds per named phase until `pop`.

    A phase entered twice in one step (e.g. two eval passes) adds up. Use
    one Timer for the run and call `pop()` once per logged step:

        with timer.phase("rollout"):
            completions = jax.block_until_ready(sample(...))
        logger.log(step, {**losses, **timer.pop()})
    """

    def __init__(self, prefix: str = "time/"):
        self.prefix = prefix
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            # Recorded even when the phase raises, so a failing step's log
            # still shows where the time went.
            elapsed = time.perf_counter() - start
            self._seconds[name] = self._seconds.get(name, 0.0) + elapsed

    def peek(self) -> dict[str, float]:
        """The accumulated seconds, keyed `<prefix><phase>`, without reset."""
        return {f"{self.prefix}{k}": v for k, v in self._seconds.items()}

    def pop(self) -> dict[str, float]:
        """Like `peek`, then resets; adds `<prefix>total` (sum of phases)."""
        out = self.peek()
        if out:
            out[f"{self.prefix}total"] = sum(self._seconds.values())
        self._seconds = {}
        return out


@contextlib.contextmanager
def phase_timer(timings: dict[str, float], name: str) -> Iterator[None]:
    """Adds the wall seconds of the block to `timings[name]`.

    The functional twin of `Timer.phase` for code that already carries a
    metrics dict.
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


class MetricsLogger:
    """Writes one row per step to jsonl, TensorBoard and a progress bar.

    Args:
      workdir: run directory; `metrics.jsonl` and `tensorboard/` go there.
      total_steps: length of the run, for the bar's ETA.
      start_step: the step a resumed run starts from (the bar starts there).
      bar_keys: metrics shown on the bar, in this order, when present.
      progress: True/False forces the bar on/off; None shows it only when
        stderr is a terminal (logs of batch jobs stay free of `\\r` spam).
      tensorboard: False skips TensorBoard events.
      enabled: None means "process 0 only"; pass a bool to override (tests).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        total_steps: int | None = None,
        start_step: int = 0,
        bar_keys: Sequence[str] = ("loss", "reward/mean", "pass@1"),
        progress: bool | None = None,
        tensorboard: bool = True,
        enabled: bool | None = None,
    ):
        self.enabled = _is_main_process() if enabled is None else enabled
        self.bar_keys = tuple(bar_keys)
        self.path = os.path.join(os.fspath(workdir), METRICS_FILE)
        self._file = None
        self._writer = None
        self._bar = None
        self._last_step = start_step
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        # Line-buffered append: each row reaches the OS as soon as it is
        # written, so a killed run loses at most the row being written.
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter  # No TensorFlow needed.

            self._writer = SummaryWriter(logdir=os.path.join(os.fspath(workdir), TB_DIR))
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total_steps, initial=start_step, unit="step", dynamic_ncols=True
            )

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Logs `metrics` for `step`; returns the flattened Python row.

        Conversion happens on every process (so a bad value fails the same
        way everywhere), writing only where `enabled`.
        """
        row = {"step": int(step), "time": time.time(), **flatten_metrics(metrics)}
        if not self.enabled:
            return row
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in row.items():
                if key in ("step", "time") or isinstance(value, (bool, str, list)):
                    continue
                if value is not None:
                    self._writer.add_scalar(key, value, global_step=int(step))
            self._writer.flush()
        if self._bar is not None:
            self._bar.update(max(int(step) - self._last_step, 0))
            shown = {k: _format_number(row[k]) for k in self.bar_keys if k in row}
            self._bar.set_postfix(shown, refresh=True)
        self._last_step = int(step)
        return row

    def write(self, message: str) -> None:
        """Prints a line without breaking the progress bar (process 0 only)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a `metrics.jsonl` (or the workdir holding one), sorted by step.

    When a step appears more than once (a resumed run re-logged the steps
    after its checkpoint), the row written last wins. A truncated final
    line (the run was killed mid-write) is skipped; a bad line elsewhere
    is an error naming the file and line.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                continue
            raise ValueError(f"{path}:{number}: not a JSON row ({err})") from err
        by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def plot_metrics(
    paths_by_label: Mapping[str, str | os.PathLike],
    keys: Sequence[str],
    out_png: str | os.PathLike,
    *,
    smoothing: int = 1,
) -> str:
    """Plots `keys` against step, one panel per key, one line per run.

    `paths_by_label` maps a legend label (e.g. "VPD", "GRPO") to a run's
    metrics.jsonl or workdir. `smoothing` > 1 applies a trailing moving
    average (raw RL reward curves are noisy). A key missing from every run
    raises, since an empty panel usually means a typo.
    """
    import matplotlib

    matplotlib.use("Agg")  # Reports are made on headless hosts.
    import matplotlib.pyplot as plt

    runs = {label: read_metrics(p) for label, p in paths_by_label.items()}
    fig, axes = plt.subplots(
        len(keys), 1, figsize=(7, 2.8 * len(keys)), sharex=True, squeeze=False
    )
    for ax, key in zip(axes[:, 0], keys):
        plotted = False
        for label, rows in runs.items():
            points = [
                (r["step"], r[key])
                for r in rows
                if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool)
            ]
            if not points:
                continue
            steps, values = map(np.asarray, zip(*points))
            if smoothing > 1:
                kernel = np.ones(smoothing)
                counts = np.convolve(np.ones_like(values, float), kernel)[: len(values)]
                values = np.convolve(values, kernel)[: len(values)] / counts
            ax.plot(steps, values, label=label)
            plotted = True
        if not plotted:
            plt.close(fig)
            raise KeyError(f"metric {key!r} is in none of the runs: {list(paths_by_label)}")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    out_png = os.fspath(out_png)
    os.makedirs(os.path.dirname(out_png) or ".", exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
