"""The optimisation and loss settings of the train steps, and the optimizer.

A frozen dataclass, so a `Steps` object's jitted functions can close over it
(each field is a compile-time constant of the step). A config file's
`ml_collections.ConfigDict` converts with `TrainConfig.from_mapping`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from vpd_jax.divergences import DIVERGENCES


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # optimizer: AdamW + global-norm clipping, warmup then constant | cosine
    lr: float = 1e-6  # peak learning rate (SDPO's LCB setting)
    weight_decay: float = 0.01  # decoupled; norms are never decayed
    clip_norm: float = 1.0  # global gradient-norm clip (0 disables)
    b1: float = 0.9  # Adam first-moment decay
    b2: float = 0.999  # Adam second-moment decay
    adam_eps: float = 1e-8  # Adam denominator epsilon
    # Schedules count training iterations (one rollout batch each), not
    # optimizer updates: a VPD iteration with an E-step updates twice at the
    # iteration's learning rate.
    warmup_steps: int = 0  # linear warmup from lr / warmup_steps to lr, in iterations
    schedule: str = "constant"  # after warmup: "constant" | "cosine"
    total_steps: int = 1000  # cosine: iteration at which lr reaches min_lr_ratio * lr
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    # batching
    micro_batches: int = 1  # gradient accumulation inside one jit (lax.scan)
    logit_chunk: int = 128  # response tokens per LM-head chunk in the losses
    # M-step (and SDPO): D(pi || sg q) on response tokens
    divergence: str = "reverse_kl"  # reverse_kl | forward_kl | jsd
    jsd_alpha: float = 0.5  # jsd: teacher weight in the mixture
    topk: int = 20  # 0: full vocabulary; k: top-k (+ tail) support
    importance_clip: float = 2.0  # clip of exp(l_s - l_old) when the batch has old_logp (0: off)
    m_gate: str = "none"  # none (the paper) | agree: distill only rows whose teacher log-ratio has the verdict's sign
    # E-step: BCO on beta * rho with running shift delta, + lambda_kl * KL(q || sg pi)
    beta: float = 0.1  # implicit-reward scale
    lambda_kl: float = 0.1  # weight of the token-level trust region
    delta_momentum: float = 0.9  # running-average momentum of delta
    length_normalize: bool = False  # rho as a per-token mean instead of a sum
    # GRPO baseline
    clip_low: float = 0.2  # ratio clipped below at 1 - clip_low
    clip_high: float = 0.28  # ratio clipped above at 1 + clip_high (DAPO's clip-higher)
    dr_grpo: bool = False  # Dr.GRPO: no std normalisation, constant normaliser rows x response_budget
    response_budget: int = 0  # Dr.GRPO: tokens per row in its normaliser (the trainer sets rollout.max_new_tokens)
    kl_coef: float = 0.0  # k3 KL to the reference params (needs a reference, kept when > 0)
    # SDPO teacher for the M-step
    sdpo_teacher: str = "current"  # current (VPD too) | ema | mix (reference/current logit mix)
    ema_decay: float = 0.99  # ema: teacher <- decay * teacher + (1 - decay) * params each step
    mix_coef: float = 0.5  # mix: teacher logits = c * current + (1 - c) * reference

    def __post_init__(self):
        checks = [
            (self.schedule in ("constant", "cosine"), "schedule must be 'constant' or 'cosine'"),
            (self.divergence in DIVERGENCES, f"divergence must be one of {DIVERGENCES}"),
            (self.sdpo_teacher in ("current", "ema", "mix"), "sdpo_teacher must be current | ema | mix"),
            (self.micro_batches >= 1, "micro_batches must be >= 1"),
            (self.logit_chunk >= 1, "logit_chunk must be >= 1"),
            (self.topk >= 0, "topk must be >= 0 (0 = full vocabulary)"),
            (0.0 <= self.delta_momentum <= 1.0, "delta_momentum must be in [0, 1]"),
            (0.0 <= self.ema_decay <= 1.0, "ema_decay must be in [0, 1]"),
            (self.divergence != "jsd" or 0.0 < self.jsd_alpha < 1.0, "jsd_alpha must be in (0, 1)"),
            (not self.dr_grpo or self.response_budget > 0,
             "dr_grpo needs response_budget > 0 (the rollout's max_new_tokens): its normaliser must be a constant"),
            (self.importance_clip >= 0, "importance_clip must be >= 0 (0 = off)"),
            (self.m_gate in ("none", "agree"), "m_gate must be 'none' or 'agree'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {msg} (got {self})")

    @property
    def uses_ema(self) -> bool:
        return self.sdpo_teacher == "ema"

    @property
    def uses_reference(self) -> bool:
        return self.sdpo_teacher == "mix" or self.kl_coef > 0

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "TrainConfig":
        """From a dict / ConfigDict; an unknown key is an error naming it."""
        cfg = dict(cfg.items())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise KeyError(f"TrainConfig: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**cfg)


def learning_rate(cfg: TrainConfig):
    """iteration -> lr: linear warmup over warmup_steps, then constant or cosine."""

    def fn(count):
        count = jnp.asarray(count, jnp.float32)
        warm = jnp.minimum(1.0, (count + 1.0) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        if cfg.schedule == "constant":
            return cfg.lr * warm
        span = max(cfg.total_steps - cfg.warmup_steps, 1)
        progress = jnp.clip((count - cfg.warmup_steps) / span, 0.0, 1.0)  # 0 -> 1 over the decay
        cosine = 0.5 * (1.0 + jnp.cos(math.pi * progress))  # 1 -> 0
        return cfg.lr * warm * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)

    return fn


def _decay_mask(params):
    """Weight decay on matrices only: RMSNorm gains stay at their scale."""
    return jax.tree_util.tree_map_with_path(lambda path, _: "norm" not in jax.tree_util.keystr(path), params)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Clipped AdamW with a unit learning rate: its updates are -(adam + wd * p).

    The caller multiplies them by `learning_rate(cfg)(iteration)`. An optax
    schedule would count optimizer updates instead, and a VPD iteration with
    an E-step makes two, so its cosine would reach the floor early.
    """
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    parts.append(optax.adamw(1.0, b1=cfg.b1, b2=cfg.b2, eps=cfg.adam_eps,
                             weight_decay=cfg.weight_decay, mask=_decay_mask))
    return optax.chain(*parts)
