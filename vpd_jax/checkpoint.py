"""Orbax checkpoints of the train state: periodic async saves, preemption, resume.

One `Checkpointer` per run owns `<workdir>/checkpoints`. Each step directory
holds three Orbax items:

  state  the train state pytree (params, optimizer state, step, delta, RNG
         key, optional EMA/reference params): any nest of dicts, lists,
         tuples, NamedTuples and registered dataclasses whose leaves are
         jax.Arrays. Saved with `StandardSave`, restored with
         `StandardRestore` onto the caller's abstract target, so arrays land
         directly on the new run's mesh and shardings (no gather to host).
  host   JSON host state (data-iterator position, anything else the loop
         needs that is not an array), one entry per process: each host
         reads its own shard of the prompts.
  meta   JSON: the model fingerprint and the shape/dtype of every state leaf,
         used to refuse a workdir that belongs to another model.

How the trainer uses it (the step number is the count of finished updates)::

    ckpt = Checkpointer(workdir, fingerprint=fp, save_every=k, max_to_keep=n)
    restored = ckpt.restore_latest(abstract_state(state_shapes, shardings))
    step = 0
    if restored is not None:
        step, state = restored.step, restored.state
        if restored.host_state is not None:   # None: other process count
            data_iter.restore(restored.host_state["data"])
    while step < total:
        step += 1
        state = train_step(state, ...)
        ckpt.maybe_save(step, state, {"data": data_iter.state()})
        if ckpt.preemption_requested:
            break                          # the save above is on disk
    ckpt.maybe_save(step, state, {...}, force=True)  # no-op if just saved
    ckpt.close()                           # waits for async writes

Preemption: on SIGTERM the handler only sets a flag. Saving from inside a
signal handler would run Orbax/JAX code re-entrantly in the middle of
whatever the main thread was doing (possibly a save); instead the next
`maybe_save` saves synchronously and `preemption_requested` (True only once
that save is on disk) tells the loop to stop. Multi-host: every process must call `maybe_save`/`restore_latest` with
the same step (Orbax coordinates the writes and barriers; process 0 writes
the JSON items, after gathering every host's state). There SIGTERM may reach hosts at different steps, so the Python
handler is not installed; JAX's preemption sync point
(`reached_preemption`, enabled by `jax.distributed.initialize`) makes all
hosts agree on the step to save.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_META_FORMAT = 1


class CheckpointMismatchError(RuntimeError):
    """The workdir holds checkpoints of another model; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """A restored checkpoint: `state` is on the target's shardings.

    `host_state` is what this process passed to `save`; it is None when the
    checkpoint was written by a different number of processes (a per-host
    iterator position cannot be carried over then). `all_host_states` holds
    every writer's, in process order.
    """

    step: int
    state: Any
    host_state: dict[str, Any] | None
    all_host_states: list[dict[str, Any]]


def _key_name(entry: Any) -> str:
    # Dict keys, attributes and indices all become plain path segments, so
    # switching the state container (dict <-> dataclass) is not a "new model".
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def state_signature(tree: Any) -> dict[str, str]:
    """Maps each leaf path (`params/w`) to `dtype[shape]`, e.g. `float32[4, 8]`.

    Works on arrays and on `jax.ShapeDtypeStruct`s alike, so a restore
    target can be compared with a checkpoint before any byte is read.
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "/".join(_key_name(k) for k in path): f"{x.dtype}{list(x.shape)}"
        for path, x in leaves
    }


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _path_names(tree: Any) -> list[str]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(_key_name(k) for k in path) for path, _ in leaves]


def _keys_as_data(tree: Any) -> tuple[Any, dict[str, str]]:
    """Typed PRNG keys -> their uint32 data, plus {path: impl name}.

    Orbax before ~0.11.30 cannot restore typed keys; raw key data works in
    every version and keeps the files readable without JAX's key types.
    Works on arrays and on abstract (ShapeDtypeStruct) targets.
    """
    impls = {
        name: str(jax.random.key_impl(x))
        for name, x in zip(_path_names(tree), jax.tree.leaves(tree))
        if _is_key(x) and isinstance(x, jax.Array)
    }

    def to_data(x: Any) -> Any:
        if not _is_key(x):
            return x
        if isinstance(x, jax.Array):
            return jax.random.key_data(x)
        data = jax.eval_shape(jax.random.key_data, x)
        # The extra trailing dim of key data is unsharded: the key's own
        # sharding (a spec over the leading dims) still applies.
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(x, "sharding", None))

    return jax.tree.map(to_data, tree), impls


def _wrap_keys(restored: Any, target: Any, impls: Mapping[str, str]) -> Any:
    """Inverse of `_keys_as_data` for the leaves where `target` holds a key."""
    names = iter(_path_names(target))

    def wrap(data: Any, like: Any) -> Any:
        name = next(names)
        if not _is_key(like):
            return data
        return jax.random.wrap_key_data(data, impl=impls.get(name, "threefry2x32"))

    return jax.tree.map(wrap, restored, target)


def abstract_state(shapes: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs with shardings: the restore target for a new mesh.

    `shapes` is e.g. `jax.eval_shape(init_fn, rng)`; `shardings` a matching
    tree of `jax.sharding.Sharding` (or None to keep each leaf's own).
    """
    if shardings is None:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
            shapes,
        )
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings
    )


def _fill_shardings(target: Any) -> Any:
    """Gives target leaves without a sharding the first local device.

    Without a sharding Orbax would reuse the one saved in the checkpoint,
    which names devices of the old topology. On several processes there is
    no sensible default, so a missing sharding is an error there.
    """

    def fill(name: str, x: Any) -> Any:
        if getattr(x, "sharding", None) is not None:
            return x
        if jax.process_count() > 1:
            raise ValueError(
                f"Restore target leaf {name!r} has no sharding; with several processes "
                "every leaf needs one: build the target with "
                "abstract_state(shapes, shardings)."
            )
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)

    names = iter(_path_names(target))
    return jax.tree.map(lambda x: fill(next(names), x), target)


def _json_roundtrip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{what} must be JSON-serializable (dicts, lists, str, int, float, "
            f"bool, None); convert arrays with .tolist() first: {err}"
        ) from err


def _gather_host_states(host: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process's host state in process order (a collective on pods).

    Orbax writes JSON items from process 0 only, but each host has its own
    data-iterator position (its shard of the prompts), so all are gathered.
    """
    if jax.process_count() == 1:
        return [host]
    from jax.experimental import multihost_utils

    blob = np.frombuffer(json.dumps(host).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.array([blob.size], np.int32)))
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: blob.size] = blob
    rows = np.asarray(multihost_utils.process_allgather(padded))  # [processes, max_len]
    return [json.loads(bytes(row[:n])) for row, n in zip(rows, lengths.reshape(-1))]


def same_model(found: Any, expected: Mapping[str, Any]) -> bool:
    """Whether a stored fingerprint describes this run's model.

    A fingerprint's "source" says where the weights were loaded from (an
    absolute path), "weights" what they were (file names and sizes): when
    both fingerprints carry "weights", the source is left out of the match,
    so a checkout or virtual environment that moved (the demo's GGUF lives
    inside .venv) still resumes its runs and warm starts. A fingerprint
    written before "weights" existed is matched as it always was, on the
    exact source path, so runs started before the change still resume.
    """
    if not isinstance(found, Mapping):
        return False
    if "weights" in found and "weights" in expected:
        drop = "source"
    else:
        drop = "weights"
    strip = lambda fp: {k: v for k, v in fp.items() if k != drop}
    return strip(found) == strip(expected)


class Checkpointer:
    """Saves every `save_every` steps and on preemption; restores the latest good one.

    Args:
      workdir: the run directory; checkpoints go to `<workdir>/checkpoints`.
      fingerprint: JSON-able description of the model (name, config summary)
        stored with every checkpoint; a workdir whose checkpoints carry a
        different fingerprint is refused at construction (see same_model:
        where the weights were loaded from may change, what they are may not).
      save_every: save when `step % save_every == 0`.
      max_to_keep: keep the newest N checkpoints (None keeps all).
      async_save: write in a background thread after the device->host copy.
      handle_sigterm: install the SIGTERM flag handler (single process, main
        thread only; see the module docstring for multi-host).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        fingerprint: Mapping[str, Any],
        save_every: int,
        max_to_keep: int | None = 3,
        async_save: bool = True,
        handle_sigterm: bool = True,
    ):
        if save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        workdir = os.fspath(workdir)
        # gs:// and other remote workdirs (TPU pods) go through epath as-is.
        local = "://" not in workdir
        self.directory = epath.Path(os.path.abspath(workdir) if local else workdir) / CHECKPOINT_DIR
        self.fingerprint = _json_roundtrip(dict(fingerprint), "fingerprint")
        self.save_every = save_every
        self._preempt = threading.Event()
        self._preempt_saved = False
        self._last_saved: int | None = None
        self._checked_signature = False
        # Inspect with a read-only manager first: a writable one may clean up
        # temporary directories, and a workdir of another model must stay as
        # it was.
        self._existing = self._latest_meta()
        if self._existing is not None:
            step, meta = self._existing
            if not same_model(meta.get("fingerprint"), self.fingerprint):
                raise self._mismatch(
                    step, f"model fingerprint {meta.get('fingerprint')}", f"{self.fingerprint}"
                )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=async_save,
                # Removes `*.orbax-checkpoint-tmp*` dirs left by a crash mid-save.
                cleanup_tmp_directories=True,
                create=True,
            ),
        )
        self._closed = False
        self._previous_handler: Any = None
        self._sigterm_installed = False
        if handle_sigterm and jax.process_count() == 1:
            if threading.current_thread() is threading.main_thread():
                self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
                self._sigterm_installed = True
            else:
                log.warning("Checkpointer built off the main thread: no SIGTERM handler.")

    # ---- preemption -------------------------------------------------------

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Only set a flag: see the module docstring for why no save here. The
        # previous handler is not chained: if it exited, the save would be lost.
        self._preempt.set()

    def request_preemption(self) -> None:
        """What the SIGTERM handler does; for other signals or tests."""
        self._preempt.set()

    @property
    def preemption_signalled(self) -> bool:
        """A preemption was signalled; its save may still be pending."""
        return self._preempt.is_set()

    @property
    def preemption_requested(self) -> bool:
        """Stop now: a preemption was signalled and its checkpoint is on disk.

        Deliberately not the raw signal flag: a signal that lands after this
        step's `maybe_save` returned (say, while the step is being logged)
        must not make the loop exit unsaved; it is honoured by the next
        step's `maybe_save`, and only then does this turn True.
        """
        return self._preempt_saved

    # ---- saving -----------------------------------------------------------

    def should_save(self, step: int) -> bool:
        """True at every `save_every`-th step and at the first step after SIGTERM.

        Multi-host: all processes must call this with the same step each
        iteration, since JAX's preemption sync point is a collective.
        """
        if jax.process_count() > 1 and self._manager.reached_preemption(step):
            self._preempt.set()
        if self._last_saved == step:
            return False
        return step % self.save_every == 0 or self._preempt.is_set()

    def maybe_save(
        self, step: int, state: Any, host_state: Mapping[str, Any] | None = None, *, force: bool = False
    ) -> bool:
        """Saves if `should_save(step)` (or `force`, unless step was just saved).

        Periodic saves return after the device->host copy and write in the
        background; a preemption save blocks until it is on disk. Returns
        whether a save was started.
        """
        if not (self.should_save(step) or (force and self._last_saved != step)):
            return False
        self.save(step, state, host_state)
        if self._preempt.is_set():
            self._manager.wait_until_finished()
            self._preempt_saved = True
            log.warning("Preemption: checkpoint of step %d written to %s.", step, self.directory)
        return True

    def save(self, step: int, state: Any, host_state: Mapping[str, Any] | None = None) -> None:
        """Saves unconditionally (all processes must call it)."""
        signature = state_signature(state)
        if not self._checked_signature:
            self._check_signature(signature)
        host = {"processes": _gather_host_states(_json_roundtrip(dict(host_state or {}), "host_state"))}
        data, key_impls = _keys_as_data(state)
        meta = {"format": _META_FORMAT, "fingerprint": self.fingerprint,
                "signature": signature, "key_impls": key_impls}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(data),
                host=ocp.args.JsonSave(host),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,  # The schedule is ours (should_save), not Orbax's.
        )
        self._last_saved = step

    # ---- restoring --------------------------------------------------------

    def restore_latest(self, target: Any, step: int | None = None) -> Restored | None:
        """Restores the newest readable checkpoint onto `target`'s shardings.

        `target` is the abstract train state: a pytree of
        `jax.ShapeDtypeStruct(shape, dtype, sharding=...)` with the same
        structure as the saved state (see `abstract_state`). Returns None
        when there is no checkpoint. A checkpoint that fails to read (files
        missing, truncated) is skipped with a warning and older ones are
        tried; once an older one restores, the bad newer ones are renamed to
        `<step>.corrupt` so later saves of those steps do not collide. If
        none restores, the newest error is raised and nothing is renamed
        (the fault may be the target or the devices, not the files).

        `step` (evaluation of one checkpoint) restores exactly that step:
        an absent step raises FileNotFoundError, an unreadable one the error
        above, with no fallback to another step.
        """
        self._manager.reload()
        steps = sorted(self._manager.all_steps(), reverse=True)
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(
                    f"No checkpoint of step {step} in {self.directory}; the steps there "
                    f"are {sorted(steps)}. Pick one of those, or omit the step for the latest."
                )
            steps = [step]
        expected = state_signature(target)
        filled = _fill_shardings(target)
        failures: list[tuple[int, Exception]] = []
        for step in steps:
            try:
                meta = self._restore_item(step, "meta")
                self._compare(step, meta, expected)
                out = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(_keys_as_data(filled)[0]),
                        host=ocp.args.JsonRestore(),
                    ),
                )
            except CheckpointMismatchError:
                raise
            except Exception as err:  # noqa: BLE001 - any read failure means "skip"
                log.warning(
                    "Skipping checkpoint step %d in %s: it could not be read (%s: %s). "
                    "Trying an older one.", step, self.directory, type(err).__name__, err,
                )
                failures.append((step, err))
                continue
            self._quarantine([s for s, _ in failures])
            self._checked_signature = True
            self._last_saved = step
            state = _wrap_keys(out["state"], target, meta.get("key_impls", {}))
            hosts = list(out["host"]["processes"])
            mine = hosts[jax.process_index()] if len(hosts) == jax.process_count() else None
            if mine is None:
                log.warning("Checkpoint step %d was written by %d processes, this run has %d: "
                            "host state (data position) not restored.", step, len(hosts),
                            jax.process_count())
            return Restored(step=step, state=state, host_state=mine, all_host_states=hosts)
        if failures:
            step, err = failures[0]
            raise RuntimeError(
                f"No checkpoint in {self.directory} could be restored (tried steps "
                f"{[s for s, _ in failures]}); the newest, step {step}, failed with "
                f"{type(err).__name__}: {err}. If the files are damaged, move that "
                "directory aside to start fresh; if the restore target is wrong, fix it."
            ) from err
        return None

    def _restore_item(self, step: int, name: str) -> Any:
        out = self._manager.restore(step, args=ocp.args.Composite(**{name: ocp.args.JsonRestore()}))
        return out[name]

    def _quarantine(self, steps: list[int]) -> None:
        if not steps:
            return
        if jax.process_index() == 0:
            for step in steps:
                src = self.directory / str(step)
                dst, n = self.directory / f"{step}.corrupt", 1
                while dst.exists():
                    dst, n = self.directory / f"{step}.corrupt{n}", n + 1
                if src.is_dir():
                    src.rename(dst)
                    log.warning("Moved unreadable checkpoint %s to %s.", src, dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("vpd_jax_checkpoint_quarantine")
        self._manager.reload()

    # ---- the "another model" check ---------------------------------------

    def _latest_meta(self) -> tuple[int, dict] | None:
        """(step, meta) of the newest step whose metadata reads, else None.

        No shortcut when the directory is missing: on a pod another process
        may be creating it right now, and every process must run the same
        sequence of Orbax barriers.
        """
        # Orbax warns about every option a read-only manager ignores; that is
        # noise at each resume, so its logger is quieted while building it.
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)
        try:
            manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    read_only=True, create=False, save_interval_steps=0
                ),
            )
        finally:
            absl_logger.setLevel(level)
        try:
            for step in sorted(manager.all_steps(), reverse=True):
                try:
                    out = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
                    return step, dict(out["meta"])
                except Exception as err:  # noqa: BLE001 - a damaged step is skipped
                    log.warning("Checkpoint step %d in %s has no readable metadata (%s).",
                                step, self.directory, err)
            return None
        finally:
            manager.close()

    def _check_signature(self, signature: dict[str, str]) -> None:
        if self._existing is not None:
            step, meta = self._existing
            self._compare(step, meta, signature)
        self._checked_signature = True

    def _compare(self, step: int, meta: Mapping[str, Any], expected: dict[str, str]) -> None:
        if not same_model(meta.get("fingerprint"), self.fingerprint):
            raise self._mismatch(step, f"model fingerprint {meta.get('fingerprint')}", f"{self.fingerprint}")
        found = meta.get("signature", {})
        if found != expected:
            diff = sorted(set(found.items()) ^ set(expected.items()))
            keys = sorted({k for k, _ in diff})
            shown = "; ".join(
                f"{k}: {found.get(k, 'absent')} vs {expected.get(k, 'absent')}" for k in keys[:3]
            )
            more = f" (and {len(keys) - 3} more)" if len(keys) > 3 else ""
            raise self._mismatch(step, f"state leaves that differ ({shown}{more})",
                                 "the shapes of this run's state (shown second)")

    def _mismatch(self, step: int, found: str, expected: str) -> CheckpointMismatchError:
        return CheckpointMismatchError(
            f"The checkpoint directory {self.directory} holds a checkpoint of another "
            f"model: at step {step} it has {found}, but this run expects {expected}. "
            "Nothing there was read into this run or changed. To train this model, "
            "point the workdir at a new directory; to resume that run, use its "
            "config; to start over here, move or delete that directory first."
        )

    # ---- shutdown ---------------------------------------------------------

    def wait_until_finished(self) -> None:
        """Blocks until background writes are on disk (call before exit)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending writes and restores the previous SIGTERM handler.

        Safe to call twice (a `finally:` plus a `with` block).
        """
        if not self._closed:
            self._manager.wait_until_finished()
            self._manager.close()
            self._closed = True
        if self._sigterm_installed and threading.current_thread() is threading.main_thread():
            # None means a handler set outside Python; SIG_DFL is the closest.
            signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)
            self._sigterm_installed = False

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
