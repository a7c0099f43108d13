"""vpd_jax.plots and `vpd-plot` (launch/plot.py): figures from metrics.jsonl.

The synthetic runs below are written as plain JSON rows; each test checks
the data a figure actually plots against the numbers written, not only that
a PNG exists.
"""

import json
import logging
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from vpd_jax import cli, plots
from vpd_jax.metrics import MetricsLogger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_run(workdir, rows):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(workdir)


def _vpd_rows(scale=1.0):
    """A VPD-like run: eval at steps 0 and 4, an E-step at steps 2 and 4."""
    rows = [{"step": 0, "eval/pass@1": 0.1 * scale, "eval/pass@4": 0.3 * scale, "eval/teacher_pass@1": 0.2 * scale,
             "eval/tests_passed_frac": 0.15, "eval/pass@1/template": 0.05}]
    for s in range(1, 5):
        r = {"step": s, "reward_mean": scale * s / 8, "tests_passed_frac": 0.05 * s, "frac_groups_solved": 0.25,
             "m/entropy": 1.5 + 0.1 * s, "m/divergence": 0.01 * s, "m/student_logp": -1.0, "m/teacher_logp": -0.9,
             "delta": 0.0, "verdict/wrong_answer": 0.5, "verdict/compile_error": 0.25 + 0.05 * (s % 2),
             "verdict/accepted": 0.25 - 0.05 * (s % 2)}
        if s % 2 == 0:
            r.update({"e/bco_accuracy": 0.5 + 0.1 * s, "e/kl": 0.002 * s, "e/rho_pos": 1.0, "e/rho_neg": -1.0,
                      "e/entropy": 1.2})
        rows.append(r)
    rows[-1].update({"eval/pass@1": 0.25 * scale, "eval/pass@4": 0.5 * scale, "eval/teacher_pass@1": 0.4 * scale,
                     "eval/pass@1/template": 0.1})
    return rows


def _grpo_rows():
    return [{"step": s, "reward_mean": 0.1 * s, "g/entropy": 1.0, "verdict/wrong_answer": 1.0} for s in (1, 2, 3)]


def _lines(fig):
    """{(panel title, legend label): (x, y)} of every line in a figure."""
    return {(ax.get_title(), line.get_label()): (line.get_xdata(), line.get_ydata())
            for ax in fig.axes for line in ax.get_lines()}


def test_figures_plot_the_logged_numbers():
    rows = _vpd_rows()
    figs = plots.build_figures({"vpd": rows})
    assert set(figs) == {"pass_at_k", "reward", "entropy", "teacher_vs_student", "e_step", "verdicts"}
    reward = _lines(figs["reward"])
    x, y = reward[("reward (share of rollouts passing every test)", "reward_mean")]
    np.testing.assert_array_equal(x, [1, 2, 3, 4])
    np.testing.assert_allclose(y, [s / 8 for s in range(1, 5)])
    passk = _lines(figs["pass_at_k"])
    # every pass@k the run logged, at the eval steps only
    x, y = passk[("eval pass@k", "eval/pass@4")]
    np.testing.assert_array_equal(x, [0, 4])
    np.testing.assert_allclose(y, [0.3, 0.5])
    assert ("eval pass@k", "eval/pass@1") in passk
    assert not any(k.startswith("eval/pass@1/") for title, k in passk if title == "eval pass@k")  # its own panel
    np.testing.assert_allclose(passk[("eval pass@1 by kind of problem (eval.group_by)", "eval/pass@1/template")][1],
                               [0.05, 0.1])
    tvs = _lines(figs["teacher_vs_student"])
    np.testing.assert_allclose(tvs[("eval pass@1", "eval/teacher_pass@1")][1], [0.2, 0.4])
    e_step = _lines(figs["e_step"])
    x, y = e_step[("E-step BCO accuracy", "e/bco_accuracy")]
    np.testing.assert_array_equal(x, [2, 4])  # only the iterations that ran an E-step
    np.testing.assert_allclose(y, [0.7, 0.9])


def test_verdict_mix_is_stacked_shares():
    rows = _vpd_rows()
    fig = plots.build_figures({"vpd": rows})["verdicts"]
    (ax,) = [a for a in fig.axes if a.get_visible()]
    names = sorted(k for k in rows[1] if k.startswith("verdict/"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [n.split("/")[1] for n in names]
    # the top edge of the last band is the sum of all shares: 1 at every step
    top = ax.collections[-1].get_paths()[0].vertices
    steps = {1.0, 2.0, 3.0, 4.0}
    assert {x for x, y in top if np.isclose(y, 1.0)} >= steps
    # the first band's top edge is the first verdict's share at each step
    first = ax.collections[0].get_paths()[0].vertices
    for r in rows[1:]:
        assert any(np.isclose(x, r["step"]) and np.isclose(y, r[names[0]]) for x, y in first)


def test_runs_without_a_metric_get_no_empty_panel():
    figs = plots.build_figures({"grpo": _grpo_rows()})
    assert "e_step" not in figs and "pass_at_k" not in figs and "teacher_vs_student" not in figs
    entropy = figs["entropy"]
    assert [ax.get_title() for ax in entropy.axes if ax.get_visible()] == ["student entropy (M-step / GRPO step)"]


def test_overlay_labels_each_run_and_keeps_their_data_apart():
    figs = plots.build_figures({"vpd": _vpd_rows(), "grpo": _grpo_rows()})
    lines = _lines(figs["reward"])
    title = "reward (share of rollouts passing every test)"
    np.testing.assert_allclose(lines[(title, "vpd")][1], [s / 8 for s in range(1, 5)])
    np.testing.assert_allclose(lines[(title, "grpo")][1], [0.1, 0.2, 0.3])
    assert len([a for a in figs["verdicts"].axes if a.get_visible()]) == 2  # one stack per run


def test_draw_writes_pngs_that_follow_the_data(tmp_path):
    a = _write_run(tmp_path / "a", _vpd_rows(1.0))
    b = _write_run(tmp_path / "b", _vpd_rows(2.0))
    written_a = plots.draw({"run": a}, tmp_path / "out_a")
    written_b = plots.draw({"run": b}, tmp_path / "out_b")
    assert sorted(os.path.basename(p) for p in written_a) == sorted(
        f"{s}.png" for s in ("pass_at_k", "reward", "entropy", "teacher_vs_student", "e_step", "verdicts"))
    for path in written_a:
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = {os.path.basename(p): open(p, "rb").read() for p in written_a}
    # the reward and pass@k data differ between a and b, the entropy data do not
    assert open(os.path.join(tmp_path / "out_b", "reward.png"), "rb").read() != pixels["reward.png"]
    assert open(os.path.join(tmp_path / "out_b", "pass_at_k.png"), "rb").read() != pixels["pass_at_k.png"]
    assert open(os.path.join(tmp_path / "out_b", "entropy.png"), "rb").read() == pixels["entropy.png"]
    assert len(written_b) == len(written_a)


def test_draw_run_safely_logs_a_failure_and_returns(tmp_path, caplog):
    run = _write_run(tmp_path / "run", _vpd_rows())
    open(os.path.join(run, "plots"), "w").close()  # a file where the folder should go
    with caplog.at_level(logging.WARNING, logger="vpd_jax.plots"):
        assert plots.draw_run_safely(run) == []
    assert "could not draw the figures" in caplog.text
    assert plots.draw_run_safely(tmp_path / "nothing_here") == []  # no metrics.jsonl yet: also not fatal


def test_plot_command_overlays_runs(tmp_path, capsys):
    a = _write_run(tmp_path / "vpd", _vpd_rows())
    b = _write_run(tmp_path / "grpo", _grpo_rows())
    with pytest.raises(SystemExit):
        cli.plot_main(["--workdir", a, b])  # several runs need --out
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.plot_main(["--workdir", a, str(tmp_path / "missing")])
    assert cli.plot_main(["--workdir", a, b, "--out", str(tmp_path / "cmp")]) == 0
    assert os.path.exists(tmp_path / "cmp" / "reward.png") and os.path.exists(tmp_path / "cmp" / "e_step.png")
    # one run, no --out: into its own plots/, through the launch script
    p = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "plot.py"), "--workdir", b],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(os.listdir(os.path.join(b, "plots"))) == ["entropy.png", "reward.png", "verdicts.png"]


def test_plot_metrics_writes_a_png(tmp_path):
    for label, scale in (("vpd", 1.0), ("grpo", 0.5)):
        with MetricsLogger(tmp_path / label, enabled=True, progress=False, tensorboard=False) as lg:
            for step in range(1, 6):
                lg.log(step, {"reward": {"mean": scale * step / 5}, "loss": 1.0 / step})
    out = plots.plot_metrics({"VPD": tmp_path / "vpd", "GRPO": tmp_path / "grpo" / "metrics.jsonl"},
                             ["reward/mean", "loss"], tmp_path / "plots" / "curves.png", smoothing=2)
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 500 and height > 500  # Two stacked panels.
    with pytest.raises(KeyError, match="pass@1"):
        plots.plot_metrics({"VPD": tmp_path / "vpd"}, ["pass@1"], tmp_path / "x.png")
