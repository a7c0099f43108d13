"""Supervised warm start (SFT on reference solutions) and where an RL run's weights start.

Why a warm start: RL from verifiable rewards reinforces what already earns
reward, and VPD's teacher can only distil what the feedback lets the same
weights do. A small model that never passes a test (SmolLM2-135M on code
at T=1) gives neither anything to work with. The papers' runs start from
instruction-tuned models, which is the same idea done upstream; here it is
one stage of the pipeline, the SFT -> RL order users know from TRL and tunix.

A warm start is a run directory of its own (`checkpoints/`, `metrics.jsonl`),
written by `algorithm=sft` into `workdir`, or by an RL run into
`<workdir>/warm_start` before its first iteration. An RL run starts from,
in this order:

  1. its own latest checkpoint (a resume: nothing below runs);
  2. `model.init_from`: the latest checkpoint of a warm-start directory;
  3. `warm_start.steps > 0`: `<workdir>/warm_start`, trained now, or reused
     as it is when it already holds the final step;
  4. the pretrained (or randomly initialised) weights.

The loss is the masked NLL of the reference completion after the student
prompt (`losses.sft_loss`), through the same packing, mesh and micro-batching
as the RL steps (`Steps.sft_step`).
"""

from __future__ import annotations

import logging
import os
import time

import jax
import ml_collections

from vpd_jax import components, distributed, rollouts
from vpd_jax.checkpoint import CheckpointMismatchError, Checkpointer, abstract_state
from vpd_jax.data import ExampleIterator
from vpd_jax.metrics import MetricsLogger, format_eta
from vpd_jax.packing import Row
from vpd_jax.steps import make_steps
from vpd_jax.train_config import TrainConfig

log = logging.getLogger(__name__)
WARM_DIR = "warm_start"  # under an RL run's workdir
ALGORITHM = "sft"  # the fingerprint's algorithm of a warm-start checkpoint


def sft_train_config(cfg: ml_collections.ConfigDict) -> TrainConfig:
    """The SFT optimizer: cfg.warm_start's lr with a cosine over its steps;
    micro-batching and the LM-head chunk as the RL steps have them."""
    ws = cfg.warm_start
    try:
        return TrainConfig(lr=ws.lr, weight_decay=ws.weight_decay, warmup_steps=ws.warmup_steps, schedule="cosine",
                           total_steps=max(ws.steps, 1), min_lr_ratio=0.1, micro_batches=cfg.train.micro_batches,
                           logit_chunk=cfg.train.logit_chunk)
    except ValueError as e:
        raise components.ConfigError(f"config.warm_start: {e}") from None


def sft_rows(task, tokenizer, examples, max_prompt_tokens: int, eos_id: int) -> list[Row]:
    """One Row per example: the student prompt, and as response the
    reference completion ending with the sampler's stop token, so the model
    learns to stop where sampling stops."""
    prompts = rollouts.student_prompts(task, tokenizer, examples, max_prompt_tokens)
    rows = []
    for i, (ex, ids) in enumerate(zip(examples, prompts)):
        text = task.reference_completion(ex)
        if text is None:
            raise ValueError(f"example {ex.id} has no reference completion to train on")
        rows.append(Row(ids, None, list(tokenizer.encode(text, add_special_tokens=False)) + [eos_id], group=i))
    return rows


def _checkpointer(workdir: str, model: components.Model, **kw) -> Checkpointer:
    return Checkpointer(workdir, fingerprint=dict(model.fingerprint, algorithm=ALGORITHM), **kw)


def _target(steps, params):
    return abstract_state(jax.eval_shape(steps.init_state, params), steps.state_shardings)


def run_warm_start(cfg: ml_collections.ConfigDict, mesh, model: components.Model, task, workdir: str):
    """Trains (or resumes, or reuses) the warm start in `workdir`; returns its
    params, or None when a preemption stopped it (its checkpoint is saved)."""
    ws = cfg.warm_start
    if ws.steps < 1:
        raise components.ConfigError("config.warm_start.steps must be >= 1 for a warm start")
    n_proc = jax.process_count()
    if ws.batch_size % n_proc:
        raise components.ConfigError(f"warm_start.batch_size={ws.batch_size} must be a multiple of the "
                                     f"{n_proc} processes")
    examples = [ex for ex in task.train if task.reference_completion(ex) is not None]
    if not examples:
        raise components.ConfigError(f"task {task.name} has no reference solutions to warm-start on: set "
                                     "warm_start.steps=0, or use a task that has them (vpd_generated, vpd_problems)")
    steps = make_steps(model.config, sft_train_config(cfg), mesh)
    ckpt = _checkpointer(workdir, model, save_every=ws.checkpoint_every or ws.steps, max_to_keep=1)
    restored = ckpt.restore_latest(_target(steps, model.params))
    if restored is not None and restored.step >= ws.steps:
        ckpt.close()
        log.info("warm start: reusing %s (step %d of %d)", workdir, restored.step, ws.steps)
        return restored.state.params
    data = ExampleIterator(examples, batch_size=ws.batch_size // n_proc, seed=cfg.seed)
    if restored is None:
        state, start = steps.init_state(model.params), 0
    else:
        state, start = restored.state, restored.step
        if restored.host_state is not None:
            data.restore(restored.host_state["data"])
    logger = MetricsLogger(workdir, total_steps=ws.steps, start_step=start, bar_keys=("sft/nll",),
                           progress=None if cfg.log.progress else False, tensorboard=cfg.log.tensorboard)
    logger.write(f"warm start: {ws.steps} SFT steps of {ws.batch_size} reference solutions "
                 f"({len(examples)} in the train split) into {workdir}")
    eos = model.config.eos_token_ids[0]
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else eos
    t_start = time.perf_counter()
    try:
        for step in range(start + 1, ws.steps + 1):
            t0 = time.perf_counter()
            rows = sft_rows(task, model.tokenizer, data.next_batch(), cfg.rollout.max_prompt_tokens, eos)
            batch = distributed.pack_global(rows, steps.row_multiple, steps.batch_sharding, pad,
                                            cfg.pack.seq_buckets, cfg.pack.response_buckets)
            state, m = steps.sft_step(state, batch)
            metrics = {f"sft/{k}": float(v) for k, v in m.items()}
            ckpt.maybe_save(step, state, {"data": data.state()}, force=step == ws.steps)
            metrics["time/iteration"] = time.perf_counter() - t0
            logger.log(step, metrics)
            per_step = (time.perf_counter() - t_start) / (step - start)
            logger.write(f"warm start {step}/{ws.steps} | nll {metrics['sft/nll']:.3f} "
                         f"entropy {metrics['sft/entropy']:.2f} lr {metrics['sft/lr']:.2e} | "
                         f"{metrics['time/iteration']:.1f}s | ETA {format_eta(per_step * (ws.steps - step))}")
            if ckpt.preemption_requested:
                logger.write(f"preempted: warm start saved at step {step}, exiting")
                return None
    finally:
        ckpt.close()
        logger.close()
    return state.params


def restore_params(cfg: ml_collections.ConfigDict, mesh, model: components.Model, path: str):
    """The params of the latest checkpoint in warm-start directory `path`
    (its `checkpoints/` folder is accepted too), on this run's shardings."""
    path = os.fspath(path).rstrip("/")
    if os.path.basename(path) == "checkpoints":
        path = os.path.dirname(path)
    if "://" not in path and not os.path.isdir(os.path.join(path, "checkpoints")):
        raise components.ConfigError(f"config.model.init_from={path}: no checkpoints/ there; give the workdir "
                                     f"of an algorithm=sft run or an RL run's {WARM_DIR}/ directory")
    steps = make_steps(model.config, sft_train_config(cfg), mesh)
    try:
        ckpt = _checkpointer(path, model, save_every=1, handle_sigterm=False)
    except CheckpointMismatchError as e:
        raise components.ConfigError(f"config.model.init_from={path}: not a warm start of this model. {e}") from None
    try:
        restored = ckpt.restore_latest(_target(steps, model.params))
    finally:
        ckpt.close()
    if restored is None:
        raise components.ConfigError(f"config.model.init_from={path}: no checkpoint found there")
    log.info("initial weights: %s, step %d", path, restored.step)
    return restored.state.params


def initial_params(cfg: ml_collections.ConfigDict, mesh, model: components.Model, task):
    """Steps 2-4 of the module docstring: the weights a fresh RL run starts
    from (None: preempted during the warm start)."""
    if cfg.model.init_from:
        return restore_params(cfg, mesh, model, cfg.model.init_from)
    if cfg.warm_start.steps > 0:
        return run_warm_start(cfg, mesh, model, task, os.path.join(cfg.workdir, WARM_DIR))
    return model.params
