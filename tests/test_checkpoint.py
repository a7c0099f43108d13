"""Tests for vpd_jax.checkpoint: resume, resharding, corruption, preemption, refusal."""

import dataclasses
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding

from vpd_jax import checkpoint as ckpt_lib
from vpd_jax.checkpoint import Checkpointer, CheckpointMismatchError, abstract_state

# A failed tensorstore read (the damaged-checkpoint tests) can leave a
# callback that fires after Orbax's event loop closed, reported whenever the
# garbage collector runs; harmless, and not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FP = {"model": "toy", "layers": 2}


class AdamLike(NamedTuple):  # Optax states are NamedTuples of arrays.
    count: jax.Array
    mu: dict


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    params: dict
    opt: AdamLike
    step: jax.Array
    delta: jax.Array
    rng: jax.Array
    ema: Any = None  # Optional: absent in GRPO runs.


def make_state(value: float, ema: bool = False) -> TrainState:
    params = {
        "embed": jnp.arange(32, dtype=jnp.float32).reshape(4, 8) * value,
        "layer": {"w": jnp.full((8, 4), value, jnp.bfloat16), "b": jnp.arange(4.0) + value},
    }
    return TrainState(
        params=params,
        opt=AdamLike(count=jnp.int32(value), mu=jax.tree.map(jnp.zeros_like, params)),
        step=jnp.int32(value),
        delta=jnp.float32(0.5 * value),
        rng=jax.random.key(int(value)),
        ema=jax.tree.map(lambda x: x + 1, params) if ema else None,
    )


def assert_same(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        # float64 holds every bfloat16, float32, int32 and uint32 exactly.
        np.testing.assert_array_equal(np.asarray(x, np.float64), np.asarray(y, np.float64))


def abstract(state):
    return abstract_state(jax.eval_shape(lambda: state))


def tree_snapshot(path):
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def save_steps(workdir, steps, **kw):
    kw = {"save_every": 1, "max_to_keep": 5, **kw}
    with Checkpointer(workdir, fingerprint=FP, handle_sigterm=False, **kw) as ck:
        for s in steps:
            ck.maybe_save(s, make_state(s), {"data": {"position": s * 10}})


def test_roundtrip_state_and_host_state(tmp_path):
    state = make_state(3.0, ema=True)
    with Checkpointer(tmp_path, fingerprint=FP, save_every=3, handle_sigterm=False) as ck:
        assert ck.restore_latest(abstract(state)) is None  # Fresh workdir.
        assert not ck.maybe_save(2, state)
        assert ck.maybe_save(3, state, {"data": {"position": 7, "epoch": 1}, "note": "x"})
    with Checkpointer(tmp_path, fingerprint=FP, save_every=3, handle_sigterm=False) as ck:
        restored = ck.restore_latest(abstract(state))
    assert restored.step == 3
    assert restored.host_state == {"data": {"position": 7, "epoch": 1}, "note": "x"}
    assert isinstance(restored.state, TrainState) and isinstance(restored.state.opt, AdamLike)
    assert_same(restored.state, state)


def test_every_k_keeps_last_n_and_final_force(tmp_path):
    with Checkpointer(tmp_path, fingerprint=FP, save_every=2, max_to_keep=2, handle_sigterm=False) as ck:
        saved = [s for s in range(1, 10) if ck.maybe_save(s, make_state(s))]
        assert saved == [2, 4, 6, 8]
        assert ck.maybe_save(9, make_state(9), force=True)
        assert not ck.maybe_save(9, make_state(9), force=True)  # Already saved.
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["8", "9"]


def test_state_can_be_donated_right_after_async_save(tmp_path):
    """The trainer donates the state to the next step: the save must not need it."""
    state = make_state(4.0)
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        assert ck.maybe_save(1, state)
        for leaf in jax.tree.leaves(state):
            leaf.delete()  # What donation does to the buffers.
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        restored = ck.restore_latest(abstract(make_state(0)))
    assert_same(restored.state, make_state(4.0))


def test_restore_onto_new_mesh_with_other_shardings(tmp_path):
    """Saved from one device; restored straight onto a 2x2x2 mesh, and back."""
    dev0 = jax.devices()[0]
    state = jax.device_put(make_state(2.0), SingleDeviceSharding(dev0))
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        ck.maybe_save(5, state)

    mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    replicated = NamedSharding(mesh, P())
    shardings = jax.tree.map(lambda _: replicated, state)
    shardings.params = {
        "embed": NamedSharding(mesh, P("fsdp", "tensor")),
        "layer": {"w": NamedSharding(mesh, P(("data", "fsdp"), None)), "b": NamedSharding(mesh, P("tensor"))},
    }
    shardings.opt = AdamLike(count=replicated, mu=shardings.params)
    target = abstract_state(jax.eval_shape(lambda: state), shardings)
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        restored = ck.restore_latest(target)
    assert restored.step == 5
    assert_same(restored.state, state)
    for got, want in zip(jax.tree.leaves(restored.state), jax.tree.leaves(shardings)):
        assert got.sharding == want
    embed = restored.state.params["embed"]
    assert len(embed.addressable_shards) == 8
    assert embed.addressable_shards[0].data.shape == (2, 4)
    assert restored.state.params["layer"]["w"].addressable_shards[0].data.shape == (2, 4)

    # And from the mesh back onto one device.
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        ck.maybe_save(6, restored.state)
    single = abstract_state(jax.eval_shape(lambda: state),
                            jax.tree.map(lambda _: SingleDeviceSharding(jax.devices()[3]), state))
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        again = ck.restore_latest(single)
    assert again.step == 6
    assert_same(again.state, state)
    assert again.state.params["embed"].devices() == {jax.devices()[3]}


def _remove_state_manifests(step_dir):
    for f in glob.glob(f"{step_dir}/state/**/manifest.ocdbt", recursive=True):
        os.remove(f)


def _truncate_state_data(step_dir):
    files = [f for f in glob.glob(f"{step_dir}/state/**/d/*", recursive=True) if os.path.isfile(f)]
    assert files
    for f in files:
        os.truncate(f, os.path.getsize(f) // 2)


def _truncate_host_json(step_dir):
    os.truncate(f"{step_dir}/host/metadata", 5)


@pytest.mark.parametrize("damage", [_remove_state_manifests, _truncate_state_data, _truncate_host_json])
def test_damaged_latest_is_skipped_with_warning(tmp_path, caplog, damage):
    save_steps(tmp_path, [2, 4])
    damage(str(tmp_path / "checkpoints" / "4"))
    with caplog.at_level(logging.WARNING, logger=ckpt_lib.__name__):
        with Checkpointer(tmp_path, fingerprint=FP, save_every=2, handle_sigterm=False) as ck:
            restored = ck.restore_latest(abstract(make_state(0)))
            assert restored.step == 2
            assert restored.host_state == {"data": {"position": 20}}
            assert_same(restored.state, make_state(2))
            # The damaged step was moved aside, so the run can save step 4 again.
            assert ck.maybe_save(4, make_state(4))
    assert "Skipping checkpoint step 4" in caplog.text
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4", "4.corrupt"]
    with Checkpointer(tmp_path, fingerprint=FP, save_every=2, handle_sigterm=False) as ck:
        assert ck.restore_latest(abstract(make_state(0))).step == 4


def test_uncommitted_tmp_dir_from_a_crash_is_ignored(tmp_path):
    save_steps(tmp_path, [2])
    ckdir = tmp_path / "checkpoints"
    tmp = ckdir / "3.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(ckdir / "2", tmp)
    _remove_state_manifests(str(tmp))
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        restored = ck.restore_latest(abstract(make_state(0)))
        assert restored.step == 2
        assert ck.maybe_save(3, make_state(3))
    assert sorted(os.listdir(ckdir)) == ["2", "3"]


def test_restore_a_given_step_without_fallback(tmp_path):
    save_steps(tmp_path, [2, 4, 6])
    _remove_state_manifests(str(tmp_path / "checkpoints" / "4"))
    with Checkpointer(tmp_path, fingerprint=FP, save_every=2, handle_sigterm=False) as ck:
        restored = ck.restore_latest(abstract(make_state(0)), step=2)
        assert restored.step == 2
        assert_same(restored.state, make_state(2))
        with pytest.raises(FileNotFoundError, match=r"No checkpoint of step 3 .* are \[2, 4, 6\]"):
            ck.restore_latest(abstract(make_state(0)), step=3)
        with pytest.raises(RuntimeError, match=r"tried steps \[4\]"):
            ck.restore_latest(abstract(make_state(0)), step=4)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4", "6"]


def test_nothing_restorable_raises_and_renames_nothing(tmp_path):
    save_steps(tmp_path, [1, 2])
    for step in ("1", "2"):
        _remove_state_manifests(str(tmp_path / "checkpoints" / step))
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        with pytest.raises(RuntimeError, match=r"No checkpoint in .*checkpoints could be restored"):
            ck.restore_latest(abstract(make_state(0)))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_workdir_of_another_model_is_refused_untouched(tmp_path):
    save_steps(tmp_path, [1])
    # A crash leftover too: a writable manager would clean it up.
    shutil.copytree(tmp_path / "checkpoints" / "1", tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-5")
    before = tree_snapshot(tmp_path)
    with pytest.raises(CheckpointMismatchError) as err:
        Checkpointer(tmp_path, fingerprint={"model": "other", "layers": 2}, save_every=1)
    msg = str(err.value)
    assert str(tmp_path / "checkpoints") in msg and "'toy'" in msg and "'other'" in msg
    assert "new directory" in msg
    assert tree_snapshot(tmp_path) == before


def test_moved_weight_source_still_resumes_other_weights_do_not(tmp_path):
    """The fingerprint's source is an absolute path (the demo's GGUF sits in
    .venv): a moved checkout or a new venv must still resume; a different
    file of the same name, or another model, must not."""
    from vpd_jax.components import model_fingerprint, weights_identity
    from vpd_jax.models import preset

    config = preset("smollm2-135m")
    for name, data in (("a", b"weights" * 100), ("b", b"weights" * 100), ("c", b"weights" * 101)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.gguf").write_bytes(data)
    fp = lambda d: dict(model_fingerprint(config, str(tmp_path / d / "m.gguf")), algorithm="sft")
    run = tmp_path / "run"
    with Checkpointer(run, fingerprint=fp("a"), save_every=1, handle_sigterm=False) as ck:
        ck.maybe_save(1, make_state(1))
    with Checkpointer(run, fingerprint=fp("b"), save_every=1, handle_sigterm=False) as ck:
        assert ck.restore_latest(abstract(make_state(0))).step == 1
    with pytest.raises(CheckpointMismatchError, match="another model"):
        Checkpointer(run, fingerprint=fp("c"), save_every=1, handle_sigterm=False)
    other = dict(fp("b"), model=dict(fp("b")["model"], num_layers=3))
    with pytest.raises(CheckpointMismatchError, match="another model"):
        Checkpointer(run, fingerprint=other, save_every=1, handle_sigterm=False)
    assert weights_identity(str(tmp_path / "a")) == {"name": "a", "files": 1, "bytes": 700}
    # A checkpoint from before "weights" existed: matched on the exact path, as it was.
    old = {k: v for k, v in fp("a").items() if k != "weights"}
    assert ckpt_lib.same_model(old, fp("a")) and not ckpt_lib.same_model(old, fp("b"))
    old_run = tmp_path / "old_run"
    with Checkpointer(old_run, fingerprint=old, save_every=1, handle_sigterm=False) as ck:
        ck.maybe_save(1, make_state(1))
    with Checkpointer(old_run, fingerprint=fp("a"), save_every=1, handle_sigterm=False) as ck:
        assert ck.restore_latest(abstract(make_state(0))).step == 1


def test_same_fingerprint_other_shapes_is_refused(tmp_path):
    save_steps(tmp_path, [1])
    before = tree_snapshot(tmp_path)
    bigger = make_state(1.0)
    bigger.params["embed"] = jnp.zeros((4, 16))
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        with pytest.raises(CheckpointMismatchError, match=r"embed: float32\[4, 8\] vs float32\[4, 16\]"):
            ck.restore_latest(abstract(bigger))
        with pytest.raises(CheckpointMismatchError, match="another model"):
            ck.maybe_save(2, bigger)
    assert tree_snapshot(tmp_path) == before


def test_host_state_must_be_json(tmp_path):
    with Checkpointer(tmp_path, fingerprint=FP, save_every=1, handle_sigterm=False) as ck:
        with pytest.raises(TypeError, match="host_state must be JSON-serializable"):
            ck.maybe_save(1, make_state(1), {"pos": object()})


def test_preemption_request_saves_off_schedule_and_waits(tmp_path):
    with Checkpointer(tmp_path, fingerprint=FP, save_every=100, handle_sigterm=False) as ck:
        assert not ck.maybe_save(7, make_state(7))
        # The signal lands after this step's maybe_save (e.g. while logging):
        # the loop must not stop before the next step has saved.
        ck.request_preemption()
        assert ck.preemption_signalled and not ck.preemption_requested
        assert ck.maybe_save(8, make_state(8))
        assert ck.preemption_requested
        # Synchronous: committed before close() (no tmp dir left).
        assert os.listdir(tmp_path / "checkpoints") == ["8"]


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    import jax.numpy as jnp
    from vpd_jax.checkpoint import Checkpointer

    ck = Checkpointer(sys.argv[1], fingerprint={"model": "toy"}, save_every=1000)
    w, step = jnp.zeros((16,)), 0
    while step < 100000:
        step += 1
        w = w + 1.0
        ck.maybe_save(step, {"w": w, "step": jnp.int32(step)}, {"data": {"position": step}})
        if ck.preemption_requested:
            print("preempted at", step, flush=True)
            break
        if step == 3:
            print("ready", flush=True)
        time.sleep(0.02)
    ck.close()
""")


def test_sigterm_saves_at_next_step_and_exits_cleanly(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SIGTERM_SCRIPT)
    pythonpath = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    step = int(out.split("preempted at")[1])
    assert step > 3
    target = {"w": jax.ShapeDtypeStruct((16,), jnp.float32), "step": jax.ShapeDtypeStruct((), jnp.int32)}
    with Checkpointer(tmp_path / "run", fingerprint={"model": "toy"}, save_every=1000,
                      handle_sigterm=False) as ck:
        restored = ck.restore_latest(target)
    assert restored.step == step
    assert restored.host_state == {"data": {"position": step}}
    assert restored.all_host_states == [restored.host_state]
    np.testing.assert_array_equal(restored.state["w"], np.full((16,), float(step)))
    assert int(restored.state["step"]) == step


def test_sigterm_handler_is_restored_on_close(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    ck = Checkpointer(tmp_path, fingerprint=FP, save_every=1)
    assert signal.getsignal(signal.SIGTERM) == ck._on_sigterm
    os.kill(os.getpid(), signal.SIGTERM)  # Sets the flag; the process lives on.
    assert ck.preemption_signalled
    ck.close()
    assert signal.getsignal(signal.SIGTERM) == before
    ck.close()  # Idempotent.


MULTIPROCESS_SCRIPT = textwrap.dedent("""
    import os, sys, time
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    rank, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    from vpd_jax.checkpoint import Checkpointer

    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "fsdp"))  # 4 devices, 2 hosts
    base = np.arange(32, dtype=np.float32).reshape(8, 4)
    ck = Checkpointer(workdir, fingerprint={"model": "mp"}, save_every=1000)
    w = jax.make_array_from_callback(base.shape, NamedSharding(mesh, P("data", "fsdp")),
                                     lambda idx: base[idx])
    for step in range(1, 3000):
        w = w + 1.0
        ck.maybe_save(step, {"w": w}, {"data": {"shard_index": rank, "position": 10 * step + rank}})
        if ck.preemption_requested:
            print("preempted at", step, flush=True)
            break
        if step == 3:
            print("ready", flush=True)
        time.sleep(0.02)
    ck.close()

    # A new Checkpointer, as a restarted run would make, onto other shardings.
    ck = Checkpointer(workdir, fingerprint={"model": "mp"}, save_every=1000)
    sharding = NamedSharding(mesh, P("fsdp", None))
    r = ck.restore_latest({"w": jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=sharding)})
    assert r.step == step and r.state["w"].sharding == sharding
    for shard in r.state["w"].addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), base[shard.index] + step)
    assert r.host_state == {"data": {"shard_index": rank, "position": 10 * step + rank}}, r.host_state
    ck.close()
    print("ok", flush=True)
""")


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pair(script, workdir, sigterm_rank):
    pythonpath = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "JAX_PLATFORMS": "cpu"}
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), port, str(workdir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for rank in (0, 1)]
    try:
        lines = []  # Gloo also prints to stdout: wait for our line.
        while not lines or lines[-1] not in ("ready\n", ""):
            lines.append(procs[sigterm_rank].stdout.readline())
        assert lines[-1] == "ready\n", "".join(lines)
        procs[sigterm_rank].send_signal(signal.SIGTERM)
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.rstrip().endswith("ok"), out[-2000:] + err[-3000:]
    return [out for out, _ in results]


def test_two_processes_preempted_together_then_restore_own_host_state(tmp_path, caplog):
    """jax.distributed on localhost, SIGTERM to one host only.

    JAX's preemption sync point makes both hosts save the same step; both
    call save (Orbax coordinates); a new Checkpointer in each restores onto
    other shardings and gets that host's own data position back.
    """
    script = tmp_path / "worker.py"
    script.write_text(MULTIPROCESS_SCRIPT)
    outs = _run_pair(script, tmp_path / "run", sigterm_rank=1)
    steps = {int(out.split("preempted at")[1].split()[0]) for out in outs}
    assert len(steps) == 1, outs  # Both hosts stopped at the same step.
    step = steps.pop()

    # One process restoring a two-process checkpoint: arrays yes, host positions no.
    target = {"w": jax.ShapeDtypeStruct((8, 4), jnp.float32)}
    with caplog.at_level(logging.WARNING, logger=ckpt_lib.__name__):
        with Checkpointer(tmp_path / "run", fingerprint={"model": "mp"}, save_every=2,
                          handle_sigterm=False) as ck:
            restored = ck.restore_latest(target)
    np.testing.assert_array_equal(restored.state["w"], np.arange(32.0).reshape(8, 4) + step)
    assert restored.host_state is None
    assert [h["data"]["position"] for h in restored.all_host_states] == [10 * step, 10 * step + 1]
    assert "written by 2 processes, this run has 1" in caplog.text
