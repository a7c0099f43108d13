"""The tiny config end to end with the real feedback server.

Training, checkpoints, exact resume, SIGTERM, evaluation and bad input, each
through the public entry points (`launch/tpu_run.py`, `launch/eval.py`) in
subprocesses, as a user runs them. A persistent compilation cache shared by
the subprocesses keeps the repeated runs cheap.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def _env(tmp_cache):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one CPU device unless a test asks for more
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONUNBUFFERED="1")
    return env


def _run(args, env, timeout=600, check=True):
    p = subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def _train(workdir, env, *extra, check=True):
    return _run(["launch/tpu_run.py", "--config", "configs/tiny.py", f"--config.workdir={workdir}",
                 "--config.log.progress=False", *extra], env, check=check)


def _rows(workdir):
    rows = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            rows[r["step"]] = r
    return rows


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, cache):
    workdir = tmp_path_factory.mktemp("full")
    _train(workdir, _env(cache))
    return str(workdir)


def test_train_writes_checkpoints_metrics_and_eval(full_run):
    rows = _rows(full_run)
    assert sorted(rows) == [1, 2, 3, 4]
    for r in rows.values():
        assert "m/m_loss" in r and "time/rollout" in r and "time/grading" in r and "reward_mean" in r
    assert "e/bco_accuracy" in rows[2] and "e/bco_accuracy" in rows[4]  # E-step every 2 iterations
    assert "e/bco_accuracy" not in rows[1]
    assert "eval/pass@1" in rows[4]
    steps = sorted(os.listdir(os.path.join(full_run, "checkpoints")))
    assert "2" in steps and "4" in steps
    assert os.path.exists(os.path.join(full_run, "eval", "step_4.json"))
    assert os.listdir(os.path.join(full_run, "tensorboard"))
    # the run drew its own figures at the end (plots.py tests what they hold)
    assert {"reward.png", "e_step.png", "pass_at_k.png", "verdicts.png"} <= set(os.listdir(os.path.join(full_run,
                                                                                                        "plots")))


def test_resume_equals_uninterrupted(full_run, tmp_path, cache):
    env = _env(cache)
    _train(tmp_path, env, "--config.total_steps=2")
    _train(tmp_path, env)  # resumes at step 2, runs 3 and 4
    full, resumed = _rows(full_run), _rows(tmp_path)
    for step in (3, 4):
        for key in ("m/m_loss", "m/divergence", "reward_mean", "delta"):
            assert resumed[step][key] == pytest.approx(full[step][key], rel=1e-5, abs=1e-6), (step, key)
    assert resumed[4]["e/bco_loss"] == pytest.approx(full[4]["e/bco_loss"], rel=1e-5, abs=1e-6)


def test_eval_prints_pass_at_1_and_teacher_diagnostics(full_run, cache):
    # the checkpoints/ folder stands for its run: the JSON lands in the workdir
    p = _run(["launch/eval.py", "--config", "tiny", f"--checkpoint_dir={os.path.join(full_run, 'checkpoints')}",
              "--config.eval.teacher=True"], _env(cache))
    assert "pass@1" in p.stdout and "teacher_pass@1" in p.stdout
    out = json.load(open(os.path.join(full_run, "eval_step4.json")))
    assert 0.0 <= out["pass@1"] <= 1.0 and out["step"] == 4
    with open(os.path.join(full_run, "eval_step4_samples.jsonl")) as f:
        samples = [json.loads(line) for line in f]
    assert len(samples) == out["num_problems"] * out["num_samples"]  # one record per student sample
    assert sum(s["passed"] for s in samples) / len(samples) == pytest.approx(out["pass@1"])
    # every student sample got one teacher sample; the summary is their mean
    assert all("teacher_completion" in s for s in samples)
    assert sum(s["teacher_passed"] for s in samples) / len(samples) == pytest.approx(out["teacher_pass@1"])
    with_ctx = [s for s in samples if s["teacher_context"] != "none"]
    assert len(with_ctx) / len(samples) == pytest.approx(out["context_frac"])
    # failed samples carry the environment's critique, so they have a context
    assert all(s["teacher_context"] != "none" for s in samples if not s["passed"] and s["critique"])


def test_sigterm_leaves_a_restorable_checkpoint(tmp_path, cache):
    env = _env(cache)
    cmd = [PY, "launch/tpu_run.py", "--config", "configs/tiny.py", f"--config.workdir={tmp_path}",
           "--config.log.progress=False", "--config.total_steps=50", "--config.checkpoint.every=100"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    saved = [int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()]
    assert saved and max(saved) < 50  # saved at the step boundary after SIGTERM, not at the end
    p = _train(tmp_path, env, f"--config.total_steps={max(saved) + 1}", "--config.checkpoint.every=100")
    assert f"resumed from" in p.stderr and f"at step {max(saved)}" in p.stderr


def test_bad_inputs_get_clear_errors(full_run, tmp_path, cache):
    env = _env(cache)
    p = _train(tmp_path / "a", env, "--config.nope=1", check=False)
    assert p.returncode != 0 and "nope" in p.stderr
    p = _train(tmp_path / "b", env, "--config.model.path=/does/not/exist", "--config.model.preset=", check=False)
    assert p.returncode != 0 and "/does/not/exist" in p.stderr and "does not exist" in p.stderr
    p = _train(tmp_path / "c", env, "--config.feedback.server_address=127.0.0.1:9", check=False)
    assert p.returncode != 0 and "feedback server does not answer" in p.stderr
    p = _train(tmp_path / "d", env, "--config.rollout.oversample=0", check=False)
    assert p.returncode != 0 and "rollout.oversample=0" in p.stderr
    before = sorted(os.listdir(os.path.join(full_run, "checkpoints")))
    p = _train(full_run, env, "--config.model.overrides.num_layers=3", check=False)
    assert p.returncode != 0 and "another model" in p.stderr.lower()
    assert sorted(os.listdir(os.path.join(full_run, "checkpoints"))) == before  # nothing overwritten


@pytest.mark.slow
def test_demo_config_completes_one_iteration(tmp_path, cache):
    p = _run(["launch/tpu_run.py", "--config", "configs/demo.py", f"--config.workdir={tmp_path}",
              "--config.total_steps=1", "--config.eval.at_start=False", "--config.task.max_eval_examples=2",
              "--config.log.progress=False"], _env(cache), timeout=3000)
    rows = _rows(tmp_path)
    assert 1 in rows and "m/m_loss" in rows[1]


def test_two_processes_train_and_checkpoint_together(tmp_path, cache):
    """jax.distributed on localhost: 2 processes x 2 fake CPU devices, one
    global mesh, each host grading its own rollouts on its own server."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(cache)
    procs = []
    for pid in range(2):
        cmd = [PY, "launch/tpu_run.py", "--config", "configs/tiny.py", f"--config.workdir={tmp_path}",
               "--config.log.progress=False", "--config.total_steps=2", "--config.checkpoint.every=2",
               "--config.rollout.prompts_per_step=2", "--config.eval.every=0", "--config.task.max_eval_examples=2",
               "--config.rollout.oversample=2",  # each host filters its own groups, renumbered into the global batch
               f"--config.distributed.coordinator_address=127.0.0.1:{port}",
               "--config.distributed.num_processes=2", f"--config.distributed.process_id={pid}",
               "--config.distributed.local_device_count=2", "--config.mesh.fsdp=-1"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    assert "2" in os.listdir(tmp_path / "checkpoints")
    rows = _rows(tmp_path)  # written by process 0 only
    assert sorted(rows) == [1, 2] and "m/m_loss" in rows[2] and "filter/frac_groups_mixed" in rows[2]
