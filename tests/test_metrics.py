"""Tests for vpd_jax.metrics: jsonl rows, TensorBoard events, W&B, bar, timers."""

import glob
import json
import math
import os
import struct
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax import metrics as metrics_lib
from vpd_jax.metrics import MetricsLogger, Timer, phase_timer, read_metrics


def read_tb_scalars(logdir):
    """Decodes tensorboardX event files by hand: {tag: [(step, value)]}.

    TFRecord framing: u64 length, u32 crc, payload, u32 crc. Independent of
    the writer, so a broken writer cannot also break the reader.
    """
    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_jsonl_rows_are_python_numbers_and_flushed(tmp_path):
    logger = MetricsLogger(tmp_path, total_steps=3, enabled=True, progress=False)
    logger.log(1, {"loss": jnp.float32(0.25), "reward": {"mean": np.float64(0.5), "n": np.int32(8)},
                   "tokens_per_s": 1234, "lengths": jnp.array([1, 2]), "note": "warm", "nan": jnp.nan})
    # Readable before close: each row is flushed as it is written.
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert len(rows) == 1
    row = rows[0]
    assert row["step"] == 1 and row["loss"] == 0.25 and type(row["loss"]) is float
    assert row["reward/mean"] == 0.5 and row["reward/n"] == 8 and type(row["reward/n"]) is int
    assert row["lengths"] == [1, 2] and row["note"] == "warm" and math.isnan(row["nan"])
    logger.log(2, {"loss": 0.125})
    logger.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_bad_metric_value_fails_loudly(tmp_path):
    with MetricsLogger(tmp_path, enabled=True, progress=False, tensorboard=False) as logger:
        with pytest.raises(TypeError, match="cannot log a metric of type object"):
            logger.log(1, {"x": object()})


def test_disabled_logger_writes_nothing(tmp_path):
    with MetricsLogger(tmp_path / "run", enabled=False, progress=True) as logger:
        row = logger.log(1, {"loss": jnp.float32(1.0)})
        logger.write("hello")
    assert row["loss"] == 1.0
    assert not os.path.exists(tmp_path / "run")


def test_process_zero_is_the_default_writer(tmp_path):
    with MetricsLogger(tmp_path, progress=False, tensorboard=False) as logger:
        assert logger.enabled  # Tests run as process 0.


def test_tensorboard_scalars(tmp_path):
    with MetricsLogger(tmp_path, enabled=True, progress=False) as logger:
        logger.log(1, {"loss": 2.0, "reward": {"mean": 0.25}, "note": "skip me", "v": [1, 2]})
        logger.log(2, {"loss": 1.5, "reward": {"mean": 0.5}})
    scalars = read_tb_scalars(tmp_path / "tensorboard")
    assert scalars["loss"] == [(1, 2.0), (2, 1.5)]
    assert scalars["reward/mean"] == [(1, 0.25), (2, 0.5)]
    assert "note" not in scalars and "v" not in scalars and "time" not in scalars


def test_progress_bar_shows_eta_and_key_metrics(tmp_path, capsys):
    with MetricsLogger(tmp_path, total_steps=10, start_step=4, enabled=True, progress=True,
                       tensorboard=False, bar_keys=("loss", "reward/mean")) as logger:
        logger.log(5, {"loss": 0.5, "reward": {"mean": 0.75}, "other": 3})
        logger.write("eval done")
    err = capsys.readouterr().err
    assert "5/10" in err and "loss=0.5" in err and "reward/mean=0.75" in err
    assert "<" in err  # tqdm's elapsed<remaining (ETA) field.
    assert "other=" not in err and "eval done" in err


def test_progress_bar_off_when_not_a_tty(tmp_path, capsys):
    # Under pytest stderr is captured, i.e. not a terminal.
    with MetricsLogger(tmp_path, total_steps=10, enabled=True, tensorboard=False) as logger:
        logger.log(1, {"loss": 0.5})
    assert capsys.readouterr().err == ""


def test_timer_accumulates_and_resets():
    timer = Timer()
    with timer.phase("rollout"):
        time.sleep(0.02)
    with timer.phase("rollout"):
        time.sleep(0.02)
    with pytest.raises(ValueError):
        with timer.phase("m_step"):
            time.sleep(0.01)
            raise ValueError("boom")
    out = timer.pop()
    assert set(out) == {"time/rollout", "time/m_step", "time/total"}
    assert 0.04 <= out["time/rollout"] < 0.5 and 0.01 <= out["time/m_step"] < 0.5
    assert out["time/total"] == pytest.approx(out["time/rollout"] + out["time/m_step"])
    assert timer.pop() == {}


def test_phase_timer_adds_into_a_dict():
    timings = {"grading": 1.0}
    with phase_timer(timings, "grading"):
        time.sleep(0.01)
    assert 1.01 <= timings["grading"] < 1.5


def test_read_metrics_last_row_wins_and_tolerates_truncated_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 1.0},
            {"step": 2, "loss": 2.5}]  # A resumed run re-logs step 2.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')
    assert read_metrics(path) == [rows[0], rows[3], rows[2]]
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON row"):
        read_metrics(path)


def test_to_python_rejects_non_numeric_arrays():
    assert metrics_lib.to_python(np.bool_(True)) is True
    with pytest.raises(TypeError, match="not numeric"):
        metrics_lib.to_python(np.array(["a"]))


def test_wandb_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(ImportError, match=r"vpd-jax\[wandb\].*log.wandb=False"):
        MetricsLogger(tmp_path, enabled=True, progress=False, tensorboard=False, wandb={"mode": "offline"})


def test_wandb_offline_gets_the_same_rows_and_resumes_the_same_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", "")  # offline needs none; make sure nothing could be sent
    opts = {"project": "vpd_jax_test", "mode": "offline", "config": {"algorithm": "vpd"}}
    with MetricsLogger(tmp_path, enabled=True, progress=False, tensorboard=False, wandb=opts) as lg:
        run = lg._wandb.run
        first_id = run.id
        for step in (1, 2):
            lg.log(step, {"reward_mean": 0.25 * step, "m": {"entropy": 1.5}, "flag": True, "name": "x"})
        summary = dict(run.summary)
    assert summary["reward_mean"] == 0.5 and summary["m/entropy"] == 1.5  # same names as metrics.jsonl
    assert "flag" not in summary and "name" not in summary and "step" not in summary
    assert run.config["algorithm"] == "vpd"
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))  # written with no network
    with MetricsLogger(tmp_path, enabled=True, progress=False, tensorboard=False, wandb=opts) as lg:
        assert lg._wandb.run.id == first_id  # a resumed run continues its W&B run


def test_tensorboard_tags_are_legal_and_the_console_line_talks():
    import re

    from vpd_jax.metrics import format_eta, iteration_line, tensorboard_tag

    assert tensorboard_tag("eval/pass@1") == "eval/pass_at_1"
    assert re.fullmatch(r"[\w./-]+", tensorboard_tag("verdict/no code (x)"))
    assert (format_eta(42), format_eta(307), format_eta(3725)) == ("42s", "5m07s", "1h02m")
    row = {"reward_mean": 0.25, "tests_passed_frac": 0.5, "verdict/accepted": 0.25, "verdict/wrong_answer": 0.75,
           "verdict/no_code": 0.0, "m/entropy": 0.61, "time/rollout": 12.3, "time/m_step": 30.0,
           "time/grading": 0.1, "time/iteration": 45.0, "eval/pass@1": 0.125}
    line = iteration_line(3, 16, row, 600.0)
    for part in ("step 3/16", "reward 0.25 tests 0.50", "ok 25% wa 75%", "entropy 0.61", "pass@1 0.125",
                 "rollout 12s m_step 30s", "45s/it ETA 10m00s"):
        assert part in line, (part, line)
    assert "nc" not in line and "grading" not in line  # zero shares and sub-second phases stay off the line
    grouped = iteration_line(3, 16, {**row, "eval/pass@1/combination": 0.25, "eval/pass@1/template": 0.0}, None)
    assert "pass@1 0.125 (combination 0.25 template 0.00)" in grouped, grouped
