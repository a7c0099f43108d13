"""benchmarks/timing.py, the loop every micro-benchmark times with: warm-up,
min vs median, per-call division, bad arguments."""

import importlib.util
import os
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def timing():
    spec = importlib.util.spec_from_file_location("timing", os.path.join(ROOT, "benchmarks", "timing.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_clock(monkeypatch, timing, durations):
    """perf_counter that advances by the next duration on each timed call."""
    now, calls = [0.0], []

    def fn():
        d = durations[len(calls)]
        calls.append(d)
        now[0] += d

    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))  # this module's clock only
    return fn, calls


def test_min_skips_the_warmup_call(monkeypatch, timing):
    fn, calls = fake_clock(monkeypatch, timing, [100.0, 3.0, 1.0, 2.0])  # the first is compilation
    assert timing.seconds(fn, 3) == 1.0
    assert len(calls) == 4


def test_median_and_no_warmup(monkeypatch, timing):
    fn, calls = fake_clock(monkeypatch, timing, [5.0, 1.0, 3.0])
    assert timing.seconds(fn, 3, reduce="median", warmup=False) == 3.0
    assert len(calls) == 3


def test_calls_per_fn_divides(monkeypatch, timing):
    fn, _ = fake_clock(monkeypatch, timing, [9.0, 8.0, 6.0])
    assert timing.seconds(fn, 2, calls_per_fn=4) == 1.5


@pytest.mark.parametrize("kw", [{"reps": 0}, {"reps": 2, "reduce": "mean"}])
def test_bad_arguments(timing, kw):
    with pytest.raises(ValueError):
        timing.seconds(lambda: None, **kw)
