"""A run's figures, drawn from its `metrics.jsonl` alone.

Training calls `draw_run_safely(workdir)` at every eval and at the end, so
`<workdir>/plots/` always shows the run so far; `vpd-plot --workdir W1 W2`
(launch/plot.py) overlays several runs on the same axes, which is how the
algorithms are compared. Reading only `metrics.jsonl` means any copy of that
file (a finished run, one still going, one from another machine) can be
redrawn without JAX or the checkpoints.

What is drawn is a table (`FIGURES`): a figure is a few panels, a panel a
few metric names, and whatever a run did not log (GRPO has no E-step, an
eval-less run no pass@1) is simply left out. The verdict mix is the one
figure of another shape: stacked shares, one panel per run.

Figures are `matplotlib.figure.Figure` objects rendered by Agg, never
pyplot's global state: nothing here changes the backend of a notebook that
imports vpd_jax, and figures are freed when dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vpd_jax.metrics import read_metrics

log = logging.getLogger(__name__)
PLOTS_DIR = "plots"
VERDICT_PREFIX = "verdict/"


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    keys: tuple[str, ...] = ()  # metric names, drawn when a run has them
    prefix: str = ""  # also every metric this prefix + a name without "/" (eval/pass@ -> pass@1, pass@4, ...)
    ylabel: str = ""


FIGURES: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "pass_at_k": ("Evaluation on the eval split", (
        Panel("eval pass@k", prefix="eval/pass@", ylabel="pass@k"),
        Panel("eval pass@1 by kind of problem (eval.group_by)", prefix="eval/pass@1/", ylabel="pass@1"),
        Panel("eval: fraction of tests passed (partial credit)", ("eval/tests_passed_frac",), ylabel="fraction"),
    )),
    "reward": ("Training rollouts", (
        Panel("reward (share of rollouts passing every test)", ("reward_mean",), ylabel="reward"),
        Panel("partial credit, solved groups, rollouts with a teacher context",
              ("tests_passed_frac", "frac_groups_solved", "frac_groups_mixed", "frac_with_context"), ylabel="fraction"),
    )),
    "entropy": ("Entropy of the policy on its rollouts", (
        Panel("student entropy (M-step / GRPO step)", ("m/entropy", "g/entropy"), ylabel="nats per token"),
        Panel("teacher entropy (E-step; M-step: on the student's rollouts)", ("e/entropy", "m/teacher_entropy"),
              ylabel="nats per token"),
    )),
    "teacher_vs_student": ("Teacher (feedback in the prompt) vs student", (
        Panel("eval pass@1", ("eval/pass@1", "eval/teacher_pass@1", "eval/teacher_pass@1_with_context"),
              ylabel="pass@1"),
        Panel("mean token log-prob of the rollouts", ("m/student_logp", "m/teacher_logp"), ylabel="log-prob"),
    )),
    "e_step": ("E-step and the trust region", (
        Panel("E-step BCO accuracy", ("e/bco_accuracy",), ylabel="accuracy"),
        Panel("per-token KLs: M-step D(student || teacher), E-step KL(teacher || student)",
              ("m/divergence", "e/kl"), ylabel="nats"),
        Panel("sequence log-ratio log q - log pi", ("e/rho_pos", "e/rho_neg"), ylabel="nats"),
        Panel("BCO reward shift delta", ("delta",)),
    )),
}
VERDICTS_FIGURE = "verdicts"


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows that logged `key` as a number; NaN kept
    (a NaN loss is a signal, drawn as a gap)."""
    points = [(r["step"], float(r[key])) for r in rows
              if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool)]
    if not points:
        return np.zeros(0, int), np.zeros(0)
    steps, values = zip(*points)
    return np.asarray(steps), np.asarray(values, float)


def _panel_keys(panel: Panel, runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    present = {k for rows in runs.values() for r in rows for k in r}
    prefixed = sorted(k for k in present if panel.prefix and k.startswith(panel.prefix)
                      and "/" not in k[len(panel.prefix):])  # eval/pass@1/template is not a pass@k
    return [k for k in panel.keys if k in present] + [k for k in prefixed if k not in panel.keys]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over `window` points (raw RL curves are noisy)."""
    if window <= 1 or not len(values):
        return values
    kernel = np.ones(window)
    counts = np.convolve(np.ones_like(values), kernel)[: len(values)]
    return np.convolve(values, kernel)[: len(values)] / counts


_LINE_STYLES = ("-", "--", ":", "-.")


def _draw_lines(ax, runs, keys: Sequence[str], smoothing: int = 1) -> int:
    """One line per (run, key) present; returns how many were drawn. With
    several runs a run keeps one colour and each key its own line style."""
    drawn = 0
    for r, (label, rows) in enumerate(runs.items()):
        for k, key in enumerate(keys):
            steps, values = _series(rows, key)
            if not len(steps):
                continue
            if len(runs) == 1:
                style = dict(label=key)
            else:
                style = dict(label=label if len(keys) == 1 else f"{label}: {key}", color=f"C{r % 10}",
                             linestyle=_LINE_STYLES[k % len(_LINE_STYLES)])
            ax.plot(steps, _smooth(values, smoothing), marker="o" if len(steps) <= 25 else None, markersize=3,
                    **style)
            drawn += 1
    return drawn


def _new_figure(n_panels: int, title: str, columns: int = 2):
    from matplotlib.figure import Figure

    cols = min(columns, n_panels)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(6.0 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:n_panels]


def _finish(ax, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("training step")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def _panel_figure(title: str, panels: Sequence[Panel], runs):
    """The figure of one FIGURES entry, with only the panels some run has
    data for; None when no run has any."""
    keyed = [(p, keys) for p in panels if (keys := _panel_keys(p, runs))]
    if not keyed:
        return None
    fig, axes = _new_figure(len(keyed), title)
    for ax, (panel, keys) in zip(axes, keyed):
        _draw_lines(ax, runs, keys)
        _finish(ax, panel.title, panel.ylabel)
    return fig


def _verdict_figure(runs):
    """Share of rollouts per verdict, stacked, one panel per run (stacks of
    different runs do not overlay)."""
    with_verdicts = {label: rows for label, rows in runs.items()
                     if any(k.startswith(VERDICT_PREFIX) for r in rows for k in r)}
    if not with_verdicts:
        return None
    # One colour per verdict in every panel.
    colours = {k: f"C{i % 10}" for i, k in enumerate(sorted({k for rows in with_verdicts.values() for r in rows
                                                            for k in r if k.startswith(VERDICT_PREFIX)}))}
    fig, axes = _new_figure(len(with_verdicts), "Verdict mix of the training rollouts")
    for ax, (label, rows) in zip(axes, with_verdicts.items()):
        rows = [r for r in rows if any(k.startswith(VERDICT_PREFIX) for k in r)]
        names = sorted({k for r in rows for k in r if k.startswith(VERDICT_PREFIX)})
        steps = np.asarray([r["step"] for r in rows])
        # A verdict absent from a row had no rollout that step: share 0.
        shares = np.asarray([[float(r.get(k, 0.0)) for r in rows] for k in names])  # [verdicts, steps]
        ax.stackplot(steps, shares, labels=[k[len(VERDICT_PREFIX):] for k in names],
                     colors=[colours[k] for k in names], alpha=0.85)
        ax.set_ylim(0, 1)
        _finish(ax, label if len(runs) > 1 else "share of rollouts per verdict", "share")
    return fig


def build_figures(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """{file stem: Figure} for the runs' metric rows ({label: rows}); a
    figure none of the runs has data for is absent."""
    figures = {stem: _panel_figure(title, panels, runs) for stem, (title, panels) in FIGURES.items()}
    figures[VERDICTS_FIGURE] = _verdict_figure(runs)
    return {stem: fig for stem, fig in figures.items() if fig is not None}


def save_figures(runs: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: str | os.PathLike) -> list[str]:
    """The figures of the runs' rows ({label: rows}) as `<out_dir>/<stem>.png`;
    returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for stem, fig in build_figures(runs).items():
        path = os.path.join(os.fspath(out_dir), f"{stem}.png")
        fig.savefig(path, dpi=100)
        written.append(path)
    return written


def draw(paths_by_label: Mapping[str, str | os.PathLike], out_dir: str | os.PathLike) -> list[str]:
    """Reads each run's metrics.jsonl (a workdir or the file), writes the
    figures as `<out_dir>/<stem>.png`; returns the paths written."""
    runs = {}
    for label, path in paths_by_label.items():
        try:
            runs[label] = read_metrics(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no metrics.jsonl (give a run's workdir)") from None
    return save_figures(runs, out_dir)


def draw_run_safely(workdir: str | os.PathLike) -> list[str]:
    """A training run's own figures into `<workdir>/plots/`. A figure is a
    report, not the run: any failure is logged and the run goes on."""
    try:
        return draw({os.path.basename(os.path.normpath(workdir)): workdir}, os.path.join(workdir, PLOTS_DIR))
    except Exception:  # noqa: BLE001  (a broken font cache or full disk must not stop training)
        log.warning("could not draw the figures of %s; training goes on", workdir, exc_info=True)
        return []


def plot_metrics(paths_by_label: Mapping[str, str | os.PathLike], keys: Sequence[str],
                 out_png: str | os.PathLike, *, smoothing: int = 1) -> str:
    """`keys` against step, one panel per key, one line per run, in one PNG.

    `paths_by_label` maps a legend label (e.g. "VPD", "GRPO") to a run's
    metrics.jsonl or workdir. `smoothing` > 1 applies a trailing moving
    average. A key missing from every run raises, since an empty panel
    usually means a typo.
    """
    runs = {label: read_metrics(p) for label, p in paths_by_label.items()}
    fig, axes = _new_figure(len(keys), "", columns=1)
    for ax, key in zip(axes, keys):
        if not _draw_lines(ax, runs, [key], smoothing):
            raise KeyError(f"metric {key!r} is in none of the runs: {list(paths_by_label)}")
        _finish(ax, "", key)
    out_png = os.fspath(out_png)
    os.makedirs(os.path.dirname(out_png) or ".", exist_ok=True)
    fig.savefig(out_png, dpi=120)
    return out_png
