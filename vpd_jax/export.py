"""A training run's checkpoint -> a Hugging Face model directory.

    export_checkpoint("runs/demo", "runs/demo/hf", step=None, dtype="bfloat16")

Only the params are read (Orbax partial restore of `state/params`), never
the optimizer state, straight onto a mesh of all devices: no host holds the
model, and models/hf_export.py then gathers and writes one tensor at a time.
The model is the one the checkpoint itself declares: the trainer stores its
fingerprint (the ModelConfig's shape fields and the weight source) in every
step's `meta` item, so no training config is needed, and a checkpoint whose
params do not fit that declaration is refused before anything is written.
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp

from vpd_jax.checkpoint import CHECKPOINT_DIR, CheckpointMismatchError, state_signature
from vpd_jax.models.config import ModelConfig
from vpd_jax.models.hf_export import DEFAULT_SHARD_BYTES, check_out_dir, write_hf_model
from vpd_jax.models.params import abstract_params, param_shardings


def _manager(workdir: str) -> ocp.CheckpointManager:
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR) if "://" not in workdir \
        else f"{workdir.rstrip('/')}/{CHECKPOINT_DIR}"
    if "://" not in workdir and not os.path.isdir(directory):
        raise FileNotFoundError(f"{workdir}: no {CHECKPOINT_DIR}/ directory; give the workdir of a training run "
                                "(the directory that holds checkpoints/)")
    absl_logger = logging.getLogger("absl")  # a read-only manager warns about every option it ignores
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
            read_only=True, create=False, save_interval_steps=0))
    finally:
        absl_logger.setLevel(level)


def checkpoint_model(meta: dict, where: str) -> ModelConfig:
    """The ModelConfig a checkpoint's fingerprint declares."""
    model = (meta.get("fingerprint") or {}).get("model")
    if not isinstance(model, dict):
        raise CheckpointMismatchError(
            f"{where}: the checkpoint's fingerprint {meta.get('fingerprint')!r} does not describe a vpd_jax "
            "model (no 'model' entry); only checkpoints written by the vpd_jax trainer can be exported")
    try:
        return ModelConfig.from_json(model)
    except (TypeError, ValueError) as e:
        raise CheckpointMismatchError(f"{where}: the checkpoint's model description is not a ModelConfig "
                                      f"this version reads ({e})") from None


def restore_params(workdir: str, step: int | None = None, mesh=None) -> tuple[int, ModelConfig, dict, dict]:
    """(step, config, params, fingerprint) of a checkpoint in workdir (the latest by default).

    params are in the dtype they were trained in, sharded over `mesh`
    (default: all devices on fsdp).
    """
    from vpd_jax.sharding import make_mesh

    manager = _manager(workdir)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"{workdir}: {CHECKPOINT_DIR}/ holds no finished checkpoint; train until the "
                                    "first save (checkpoint.every steps) or give another workdir")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(f"{workdir}: no checkpoint of step {step}; the steps there are {steps}")
        where = f"{workdir} step {step}"
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        config = checkpoint_model(meta, where)
        saved = {k: v for k, v in meta.get("signature", {}).items() if k.startswith("params/")}
        dtype = next(iter(saved.values()), "float32").split("[")[0]
        mesh = mesh if mesh is not None else make_mesh()
        target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              abstract_params(config, dtype), param_shardings(config, mesh))
        expected = state_signature({"params": target})
        if saved != expected:
            diff = sorted(set(saved.items()) ^ set(expected.items()))
            shown = "; ".join(f"{k}: saved {saved.get(k, 'absent')}, config {expected.get(k, 'absent')}"
                              for k in sorted({k for k, _ in diff})[:3])
            raise CheckpointMismatchError(f"{where}: the saved params do not fit the model the checkpoint "
                                          f"declares ({shown}); it was not written by this version's trainer")
        item = {"params": target}
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True)))
        return step, config, out["state"]["params"], meta["fingerprint"]
    finally:
        manager.close()


def source_generation_config(source: str) -> dict | None:
    """The source's generation_config.json (sampling defaults), when it has one."""
    import json

    path = os.path.join(source, "generation_config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def export_checkpoint(workdir: str, out: str, step: int | None = None, dtype: str | None = None,
                      tokenizer: str = "", max_shard_bytes: int = DEFAULT_SHARD_BYTES, spread: bool = True,
                      mesh=None, log=print) -> str:
    """Writes `out` as a Hugging Face model directory; returns it.

    dtype: the stored weights' dtype (default: the trained params' dtype).
    tokenizer: where to take the tokenizer from (default: the run's weight
    source, as recorded in the checkpoint). spread: see write_hf_model.
    """
    from vpd_jax.models import load_tokenizer
    from vpd_jax.models.loading import find_tokenizer

    check_out_dir(out)
    at, config, params, fingerprint = restore_params(workdir, step, mesh)
    source = fingerprint.get("source", "")
    dtype = dtype or str(jax.tree.leaves(params)[0].dtype)
    tok = load_tokenizer(tokenizer) if tokenizer else find_tokenizer(source)
    if tok is None:
        raise FileNotFoundError(
            f"{workdir}: the run's weight source {source!r} gives no tokenizer here (a random init, or a path "
            "this machine does not have); pass the tokenizer the run used (--tokenizer PATH)")
    log(f"export: {workdir} step {at}: {config.arch}, {config.num_layers} layers, "
        f"{config.num_params() / 1e6:.1f}M params, as {dtype} -> {out}")
    files = write_hf_model(out, config, params, dtype, tokenizer=tok,
                           generation_config=source_generation_config(source), max_shard_bytes=max_shard_bytes,
                           spread=spread, log=log)
    log(f"export: wrote {out} ({len(files)} weight file{'s' * (len(files) > 1)})")
    return out
