"""Training logs: `metrics.jsonl`, TensorBoard events, optionally Weights &
Biases, a console bar, timers.

Why one module: the trainer should make one call per step (`logger.log`) and
not care which sinks exist. Every sink writes from process 0 only: on a pod
all hosts run the same loop and see the same (globally reduced) metrics, so
N copies of each row would only race on a shared filesystem.

`metrics.jsonl` is the source of truth for reports. A resumed run appends
rows again for the steps after its checkpoint, so `read_metrics` keeps the
last row written for each step. Non-finite numbers are written as Python's
`NaN` / `Infinity` tokens (a NaN loss is a signal worth keeping); `json` and
pandas read them, strict parsers may not.

Weights & Biases (`wandb=` options; config `log.wandb=True`) gets the same
rows under the same names and steps. It is optional and not a dependency:
`wandb` must be installed (`pip install "vpd-jax[wandb]"`), and
`log.wandb_mode="offline"` writes the run under `<workdir>/wandb/` with no
network (`wandb sync` uploads it later). A resumed run continues the same
W&B run (its id is kept in `<workdir>/wandb_run_id`); W&B drops the
re-logged steps a resume repeats, metrics.jsonl keeps the last of each.

Timing: JAX dispatches asynchronously, so a phase timer measures wall time
only up to the last *blocking* call inside it. Put `jax.block_until_ready`
(or a host transfer of the outputs) inside the phase you want measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_run_id"
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


def scalars(row: Mapping[str, Any]) -> dict[str, int | float]:
    """The numeric metrics of a row (no step, time, flags, strings or
    lists): what TensorBoard and W&B plot, under the same names."""
    return {k: v for k, v in row.items() if k not in ("step", "time")
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


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


def tensorboard_tag(key: str) -> str:
    """A metric name as a TensorBoard tag: only [A-Za-z0-9_./-] is legal
    there, so `eval/pass@1` is written as `eval/pass_at_1` (TensorBoard would
    rename it itself, with a warning per tag); jsonl and W&B keep the name."""
    return re.sub(r"[^\w./-]", "_", key.replace("@", "_at_"))


def format_eta(seconds: float) -> str:
    """1h02m / 5m07s / 42s."""
    s = max(int(round(seconds)), 0)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


_VERDICT_SHORT = {"accepted": "ok", "wrong_answer": "wa", "runtime_error": "re", "compile_error": "ce",
                  "no_code": "nc", "time_limit_exceeded": "tle", "memory_limit_exceeded": "mle",
                  "output_limit_exceeded": "ole", "grading_error": "ge"}


def iteration_line(step: int, total: int, row: Mapping[str, Any], eta_s: float | None) -> str:
    """The console line of one training iteration: progress, reward and test
    pass rate, verdict mix, entropy, seconds per phase, ETA."""
    parts = [f"step {step}/{total}"]
    if "reward_mean" in row:
        parts.append(f"reward {row['reward_mean']:.2f}" + (f" tests {row['tests_passed_frac']:.2f}"
                                                           if "tests_passed_frac" in row else ""))
    verdicts = [f"{_VERDICT_SHORT.get(k[8:], k[8:])} {v:.0%}" for k, v in row.items()
                if k.startswith("verdict/") and isinstance(v, (int, float)) and v > 0]
    if verdicts:
        parts.append(" ".join(verdicts))
    ent = row.get("m/entropy", row.get("g/entropy"))
    if ent is not None:
        parts.append(f"entropy {ent:.2f}")
    if "e/bco_accuracy" in row:
        parts.append(f"bco acc {row['e/bco_accuracy']:.2f} kl {row['e/kl']:.3f}")
    for k in ("eval/pass@1", "eval/teacher_pass@1"):
        if k in row:
            parts.append(f"{k[5:]} {row[k]:.3f}")
            # per kind of problem (eval.group_by), e.g. "(combination 0.59 template 0.09)"
            groups = [f"{g[len(k) + 1:]} {v:.2f}" for g, v in row.items() if g.startswith(k + "/")]
            if len(groups) > 1:
                parts[-1] += f" ({' '.join(groups)})"
    times = [f"{k[5:]} {v:.0f}s" for k, v in row.items() if k.startswith("time/") and k != "time/iteration"
             and isinstance(v, (int, float)) and v >= 0.5]
    if times:
        parts.append(" ".join(times))
    if "time/iteration" in row:
        parts.append(f"{row['time/iteration']:.0f}s/it" + (f" ETA {format_eta(eta_s)}" if eta_s is not None else ""))
    return " | ".join(parts)


class Progress:
    """Progress of one long phase (eval, sampling batches): a tqdm bar on a
    terminal, else one plain line per update with the ETA, so a log file of
    a batch job says what the run is doing too. Process 0 only."""

    def __init__(self, desc: str, total: int, unit: str = "sample", enabled: bool | None = None):
        self.desc, self.total, self.unit, self.done = desc, total, unit, 0
        self.enabled = _is_main_process() if enabled is None else enabled
        self._t0 = time.perf_counter()
        self._bar = None
        if self.enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        spent = time.perf_counter() - self._t0
        eta = spent / max(self.done, 1) * (self.total - self.done)
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}s, {spent:.0f}s, ETA {format_eta(eta)}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
      wandb: None (default) skips Weights & Biases; else `WandbSink`'s
        options (project, mode, config).
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
        wandb: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
    ):
        self.enabled = _is_main_process() if enabled is None else enabled
        self.bar_keys = tuple(bar_keys)
        self.path = os.path.join(os.fspath(workdir), METRICS_FILE)
        self._file = None
        self._writer = None
        self._bar = None
        self._wandb = None
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
        if wandb is not None:
            self._wandb = WandbSink(workdir, **wandb)
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
            for key, value in scalars(row).items():
                self._writer.add_scalar(tensorboard_tag(key), value, global_step=int(step))
            self._writer.flush()
        if self._wandb is not None:
            self._wandb.log(int(step), row)
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
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def require_wandb():
    """The wandb module, or an error saying how to get it (checked before a
    run loads its model, so a missing package costs no time)."""
    try:
        import wandb
    except ImportError:
        raise ImportError("log.wandb=True needs the wandb package, which vpd_jax does not install by default: "
                          "pip install \"vpd-jax[wandb]\" (or pip install wandb), or set log.wandb=False") from None
    return wandb


class WandbSink:
    """One Weights & Biases run per workdir, fed the rows of `metrics.jsonl`.

    Args:
      workdir: the run directory; W&B's files go to `<workdir>/wandb/`.
      project: the W&B project.
      mode: "online", "offline" (no network) or "disabled"; "" leaves it
        to W&B (its WANDB_MODE variable, else online).
      config: the run's config, shown beside the curves.
    """

    def __init__(self, workdir: str | os.PathLike, project: str = "vpd_jax", mode: str = "",
                 config: Mapping[str, Any] | None = None):
        wandb = require_wandb()
        workdir = os.fspath(workdir)
        id_path = os.path.join(workdir, WANDB_ID_FILE)
        if os.path.exists(id_path):
            with open(id_path, encoding="utf-8") as f:
                run_id = f.read().strip()
        else:
            run_id = secrets.token_hex(6)
            with open(id_path, "w", encoding="utf-8") as f:
                f.write(run_id + "\n")
        self.run = wandb.init(project=project, name=os.path.basename(os.path.normpath(workdir)), id=run_id,
                              resume="allow", dir=workdir, mode=mode or None, config=dict(config or {}))

    def log(self, step: int, row: Mapping[str, Any]) -> None:
        """The numeric metrics of a `metrics.jsonl` row, at its step."""
        self.run.log(scalars(row), step=step, commit=True)  # a row is complete: no wait for the next step

    def close(self) -> None:
        self.run.finish()


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

