"""TrainState and the jitted M-step, E-step and GRPO step.

Each step is ONE `jax.jit` with explicit in/out shardings: the state's
params and optimizer moments follow the model's logical-axis shardings, the
batch is split by rows over the mesh's batch axes, and the state is donated
so the update is written in place of the old params (no second copy of the
weights and Adam moments at the peak). Gradient accumulation over
micro-batches is a `lax.scan` inside that jit, so one step is one dispatch
whatever the micro-batch count.

Teacher and student share one set of weights (DESIGN.md section 1); what
separates the phases is where the stop-gradient sits:
  M-step  grad through the student pass only; teacher = sg(current | EMA | mix)
  E-step  grad through the teacher pass only; student = sg(current)
  GRPO    grad through the student pass; the reference (if any) is frozen
  SFT     the warm start: NLL of reference responses after the student prompt
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from vpd_jax import losses
from vpd_jax.models.config import ModelConfig
from vpd_jax.models.params import abstract_params, param_shardings
from vpd_jax.models.transformer import hidden_states, lm_head_weight
from vpd_jax.sharding import batch_divisor, batch_sharding, replicated
from vpd_jax.train_config import TrainConfig, learning_rate, make_optimizer

sg = jax.lax.stop_gradient


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """Everything a step updates; ema / ref are None unless configured."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar, iterations completed (M-step or GRPO step; an E-step shares its iteration)
    delta: jax.Array  # float32 scalar, BCO's running reward shift
    ema: Any = None  # EMA teacher params (sdpo_teacher == "ema")
    ref: Any = None  # frozen reference params (sdpo_teacher == "mix" or kl_coef > 0)


# ------------------------------------------------------------ model passes
def response_hidden(mc: ModelConfig, params, tokens, mask, index) -> jax.Array:
    """Hidden states [B, R, D] that predict the response tokens of one side."""
    h = hidden_states(mc, params, tokens, mask=mask, right_padded=True)  # [B, T, D]: pack_rows right-pads
    return jax.vmap(lambda hb, ib: hb[ib])(h, index)  # [B, R, D]


def _side(mc, params, batch, side: str):
    return response_hidden(mc, params, batch[f"{side}_tokens"], batch[f"{side}_mask"], batch[f"{side}_index"])


def _teacher_terms(mc, tc: TrainConfig, params, ema, ref, batch) -> list:
    """The M-step teacher as (coef, hidden, head) terms, all detached."""
    if tc.sdpo_teacher == "ema":
        src = [(1.0, ema)]
    elif tc.sdpo_teacher == "mix":  # trust-region teacher: logits interpolate current and reference
        src = [(tc.mix_coef, params), (1.0 - tc.mix_coef, ref)]
    else:
        src = [(1.0, params)]
    return [(c, _side(mc, sg(p), batch, "teacher"), sg(lm_head_weight(mc, p))) for c, p in src]


def _mean(x, mask, n):
    return jnp.sum(mask * x) / n


# ------------------------------------------------------------------ losses
def m_loss(mc, tc: TrainConfig, params, ema, ref, batch, norms) -> tuple:
    """M-step (= SDPO) loss of one micro-batch: D(pi || sg q) on response tokens."""
    hs = _side(mc, params, batch, "student")  # [B, R, D], differentiated
    teacher = _teacher_terms(mc, tc, params, ema, ref, batch)
    spec = losses.DivergenceSpec(tc.divergence, tc.jsd_alpha, tc.topk, "student")
    st = losses.chunked_token_stats(hs, lm_head_weight(mc, params), teacher, batch["targets"], spec,
                                    tc.logit_chunk, grad_side="student")
    mask = batch["response_mask"] * batch["has_context"][:, None]  # [B, R] rollouts with a context
    weight = None
    n = norms["m_tokens"]
    extra = {}
    if "old_logp" in batch:  # rollouts from the sampler, not these exact weights
        extra["logp_gap"] = _mean(jnp.abs(st["lp_s"] - batch["old_logp"]), mask, n)  # the mismatch, where it is corrected
        if tc.importance_clip > 0:
            weight = losses.prefix_importance_weight(st["lp_s"], batch["old_logp"], mask, tc.importance_clip)
            extra["is_clipped"] = _mean((weight >= tc.importance_clip * (1.0 - 1e-6)).astype(jnp.float32), mask, n)
    if tc.m_gate == "agree":  # only rows the teacher ranks as their verdict does
        agree = losses.teacher_agrees(st["lp_t"], st["lp_s"], mask, batch["reward"])  # [B]
        rows = batch["has_context"] * batch["row_mask"]
        extra["gate_kept"] = jnp.sum(rows * agree) / norms["n_ctx"]
        weight = agree[:, None] * (1.0 if weight is None else weight)
    loss, metrics = losses.m_step_loss(st["div"], mask, n, weight)
    metrics.update(extra)
    metrics.update(entropy=_mean(st["ent_s"], mask, n), teacher_entropy=_mean(st["ent_t"], mask, n),
                   student_logp=_mean(st["lp_s"], mask, n), teacher_logp=_mean(st["lp_t"], mask, n))
    return loss, metrics


def e_loss(mc, tc: TrainConfig, params, delta, batch, norms) -> tuple:
    """E-step loss of one micro-batch: BCO + lambda_kl KL(q || sg pi)."""
    hs = _side(mc, sg(params), batch, "student")  # [B, R, D], the detached reference
    ht = _side(mc, params, batch, "teacher")  # [B, R, D], differentiated
    w = lm_head_weight(mc, params)
    kind = "forward_kl" if tc.lambda_kl != 0 else "none"  # KL(t || s) = KL(q || pi)
    spec = losses.DivergenceSpec(kind, topk=tc.topk, support="teacher")
    st = losses.chunked_token_stats(hs, sg(w), [(1.0, ht, w)], batch["targets"], spec, tc.logit_chunk,
                                    grad_side="teacher")
    ctx = batch["has_context"] * batch["row_mask"]  # [B]
    mask = batch["response_mask"] * ctx[:, None]  # [B, R]
    kl = st.get("div", jnp.zeros_like(st["lp_s"]))
    loss, metrics = losses.e_step_loss(
        st["lp_t"], st["lp_s"], kl, mask, batch["reward"], ctx, delta, tc.beta, tc.lambda_kl,
        tc.length_normalize, norms["n_pos"], norms["n_neg"], norms["m_tokens"], norms["n_ctx"])
    metrics.update(entropy=_mean(st["ent_s"], mask, norms["m_tokens"]))
    return loss, metrics


def g_loss(mc, tc: TrainConfig, params, ref, batch, norms) -> tuple:
    """GRPO loss of one micro-batch (advantages precomputed on the full batch)."""
    hs = _side(mc, params, batch, "student")
    teacher = None
    if tc.kl_coef > 0:  # the reference scores the student context, detached
        teacher = [(1.0, _side(mc, sg(ref), batch, "student"), sg(lm_head_weight(mc, ref)))]
    spec = losses.DivergenceSpec("none")
    st = losses.chunked_token_stats(hs, lm_head_weight(mc, params), teacher, batch["targets"], spec,
                                    tc.logit_chunk, grad_side="student")
    lp_old = batch["old_logp"] if "old_logp" in batch else sg(st["lp_s"])  # on-policy: ratio 1
    mask = batch["response_mask"] * batch["row_mask"][:, None]
    loss, metrics = losses.grpo_loss(st["lp_s"], lp_old, batch["advantage"], mask, tc.clip_low, tc.clip_high,
                                     norms["g_denom"], st.get("lp_t"), tc.kl_coef, norms["tokens"])
    metrics.update(entropy=_mean(st["ent_s"], mask, norms["tokens"]),
                   student_logp=_mean(st["lp_s"], mask, norms["tokens"]))
    if "old_logp" in batch:  # mean |log pi_theta - log pi_sampler| per token: the sampler/trainer mismatch
        metrics["logp_gap"] = _mean(jnp.abs(st["lp_s"] - lp_old), mask, norms["tokens"])
    return loss, metrics


def sft_loss(mc, tc: TrainConfig, params, batch, norms) -> tuple:
    """Warm-start loss of one micro-batch: NLL of the response tokens (the
    reference solution) after the student prompt; teacher columns unused."""
    hs = _side(mc, params, batch, "student")
    st = losses.chunked_token_stats(hs, lm_head_weight(mc, params), None, batch["targets"],
                                    losses.DivergenceSpec("none"), tc.logit_chunk, grad_side="student")
    mask = batch["response_mask"] * batch["row_mask"][:, None]
    loss, metrics = losses.sft_loss(st["lp_s"], mask, norms["tokens"])
    metrics.update(entropy=_mean(st["ent_s"], mask, norms["tokens"]))
    return loss, metrics


def batch_norms(batch, tc: TrainConfig) -> dict:
    """Normalisers over the whole batch, so micro-batch losses add up exactly."""
    ctx = batch["has_context"] * batch["row_mask"]  # [B]
    pos = ctx * (batch["reward"] > 0.5)  # [B]
    rows = jnp.sum(batch["row_mask"])
    # GRPO: a token mean over the batch; Dr.GRPO: rows x the response budget,
    # a constant that never sees the batch's (bucketed) response length.
    g_denom = rows * tc.response_budget if tc.dr_grpo else jnp.sum(batch["response_mask"] * batch["row_mask"][:, None])
    return {
        "m_tokens": jnp.maximum(jnp.sum(batch["response_mask"] * ctx[:, None]), 1.0),
        "tokens": jnp.maximum(jnp.sum(batch["response_mask"] * batch["row_mask"][:, None]), 1.0),
        "n_pos": jnp.maximum(jnp.sum(pos), 1.0), "n_neg": jnp.maximum(jnp.sum(ctx - pos), 1.0),
        "n_ctx": jnp.maximum(jnp.sum(ctx), 1.0),
        "has_pos": (jnp.sum(pos) > 0).astype(jnp.float32), "has_neg": (jnp.sum(ctx - pos) > 0).astype(jnp.float32),
        "g_denom": jnp.maximum(g_denom, 1.0),
    }


# ---------------------------------------------------------- accumulation
def accumulate_grads(loss_fn: Callable, params, batch: dict, micro_batches: int, grad_shardings=None) -> tuple:
    """Sum of grads and metrics of loss_fn(params, micro_batch) over micro-batches.

    Micro-batch m holds rows m, m + M, m + 2M, ...: reshaping [B] to
    [B / M, M] keeps the row sharding on the first axis, so the scan slices
    an unsharded axis and each micro-batch stays spread over every device.
    Grads are summed in float32 whatever the param dtype.
    """
    grad_fn = jax.grad(loss_fn, has_aux=True)
    to32 = lambda t: jax.tree.map(lambda g: g.astype(jnp.float32), t)
    if micro_batches == 1:
        g, metrics = grad_fn(params, batch)
        return to32(g), metrics
    M = micro_batches
    mbs = jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0] // M, M, *x.shape[1:]), 0, 1), batch)

    def body(acc, mb):
        g, metrics = grad_fn(params, mb)
        acc = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), acc, g)
        if grad_shardings is not None:
            acc = jax.lax.with_sharding_constraint(acc, grad_shardings)
        return acc, metrics

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    grads, metrics = jax.lax.scan(body, zeros, mbs)
    return grads, jax.tree.map(lambda x: jnp.sum(x, axis=0), metrics)


# ------------------------------------------------------------------ steps
class Steps:
    """The jitted train functions of one (model, train config, mesh).

    init_state(params) -> TrainState (copies params; the caller's are kept)
    m_step / e_step / grpo_step / sft_step(state, batch) -> (state, metrics);
        the state argument is donated: use only the returned one afterwards.
        e_step does not advance state.step (the M-step of its iteration does).
    score(params, batch) -> per-token lp_s, lp_t, div, ent_s [B, R].
    batch: the dict of `vpd_jax.packing.pack_rows` (numpy or device arrays).
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, mesh):
        self.model_config, self.train_config, self.mesh = model_config, train_config, mesh
        mc, tc = model_config, train_config
        self.optimizer = make_optimizer(tc)
        self.lr_fn = learning_rate(tc)
        ps = param_shardings(mc, mesh)
        repl = replicated(mesh)
        abstract_opt = jax.eval_shape(self.optimizer.init, abstract_params(mc))
        opt_sh = optax.tree_map_params(self.optimizer, lambda _, s: s, abstract_opt, ps,
                                       transform_non_params=lambda _: repl)
        self.param_shardings = ps
        self.state_shardings = TrainState(ps, opt_sh, repl, repl, ps if tc.uses_ema else None,
                                          ps if tc.uses_reference else None)
        self.batch_sharding = batch_sharding(mesh, 1)  # a prefix: rows sharded, other dims replicated
        self.row_multiple = batch_divisor(mesh) * tc.micro_batches
        jit_step = lambda fn: jax.jit(fn, in_shardings=(self.state_shardings, self.batch_sharding),
                                      out_shardings=(self.state_shardings, repl), donate_argnums=0)
        self._init = jax.jit(self._init_fn, in_shardings=(ps,), out_shardings=self.state_shardings)
        self._m = jit_step(self._m_fn)
        self._e = jit_step(self._e_fn)
        self._g = jit_step(self._g_fn)
        self._sft = jit_step(self._sft_fn)
        self._score = jax.jit(self._score_fn, in_shardings=(ps, self.batch_sharding), out_shardings=repl)

    # ------------------------------------------------------------ traced
    def _init_fn(self, params):
        copy = lambda t: jax.tree.map(jnp.copy, t)  # distinct buffers: the state is donated later
        tc = self.train_config
        return TrainState(copy(params), self.optimizer.init(params), jnp.zeros((), jnp.int32),
                          jnp.zeros((), jnp.float32), copy(params) if tc.uses_ema else None,
                          copy(params) if tc.uses_reference else None)

    def _apply(self, state: TrainState, grads, metrics, delta=None, ends_iteration=True):
        """One optimizer update at the learning rate of the current iteration
        (state.step); the update that ends an iteration advances it."""
        tc = self.train_config
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        lr = self.lr_fn(state.step)
        updates = jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema
        if ema is not None:  # the EMA teacher trails every update of the weights
            ema = jax.tree.map(lambda e, p: tc.ema_decay * e + (1.0 - tc.ema_decay) * p.astype(e.dtype), ema, params)
        metrics = dict(metrics, grad_norm=optax.global_norm(grads), lr=lr)
        step = state.step + 1 if ends_iteration else state.step
        new = TrainState(params, opt_state, step, state.delta if delta is None else delta, ema, state.ref)
        return new, metrics

    def _grads(self, loss_fn, state, batch):
        return accumulate_grads(loss_fn, state.params, batch, self.train_config.micro_batches,
                                self.param_shardings)

    def _m_fn(self, state: TrainState, batch):
        mc, tc, norms = self.model_config, self.train_config, batch_norms(batch, self.train_config)
        fn = lambda p, mb: m_loss(mc, tc, p, state.ema, state.ref, mb, norms)
        return self._apply(state, *self._grads(fn, state, batch))

    def _e_fn(self, state: TrainState, batch):
        mc, tc, norms = self.model_config, self.train_config, batch_norms(batch, self.train_config)
        fn = lambda p, mb: e_loss(mc, tc, p, state.delta, mb, norms)
        grads, metrics = self._grads(fn, state, batch)
        delta = losses.update_delta(state.delta, metrics["rtil_pos"], metrics["rtil_neg"], norms["has_pos"],
                                    norms["has_neg"], tc.delta_momentum)
        metrics = dict(metrics, delta=delta, delta_used=state.delta)
        return self._apply(state, grads, metrics, delta, ends_iteration=False)  # the M-step follows

    def _g_fn(self, state: TrainState, batch):
        mc, tc, norms = self.model_config, self.train_config, batch_norms(batch, self.train_config)
        adv = losses.group_advantages(batch["reward"], batch["group"], batch["row_mask"], tc.dr_grpo)
        batch = dict(batch, advantage=adv)
        fn = lambda p, mb: g_loss(mc, tc, p, state.ref, mb, norms)
        grads, metrics = self._grads(fn, state, batch)
        metrics = dict(metrics, reward=jnp.sum(batch["reward"] * batch["row_mask"]) /
                       jnp.maximum(jnp.sum(batch["row_mask"]), 1.0))
        return self._apply(state, grads, metrics)

    def _sft_fn(self, state: TrainState, batch):
        mc, tc, norms = self.model_config, self.train_config, batch_norms(batch, self.train_config)
        fn = lambda p, mb: sft_loss(mc, tc, p, mb, norms)
        return self._apply(state, *self._grads(fn, state, batch))

    def _score_fn(self, params, batch):
        mc, tc = self.model_config, self.train_config
        hs = _side(mc, params, batch, "student")
        teacher = [(1.0, _side(mc, params, batch, "teacher"), lm_head_weight(mc, params))]
        spec = losses.DivergenceSpec(tc.divergence, tc.jsd_alpha, tc.topk, "student")
        return losses.chunked_token_stats(hs, lm_head_weight(mc, params), teacher, batch["targets"], spec,
                                          tc.logit_chunk)

    # ------------------------------------------------------------ public
    def _check(self, batch, multiple=None):
        B, multiple = batch["targets"].shape[0], multiple or self.row_multiple
        if B % multiple:
            raise ValueError(f"batch has {B} rows; it must be a multiple of {multiple} (mesh batch "
                             f"shards x micro_batches): pack with pack_rows(..., row_multiple={multiple})")
        return batch

    def init_state(self, params) -> TrainState:
        return self._init(params)

    def m_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        return self._m(state, self._check(batch))

    def e_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        return self._e(state, self._check(batch))

    def grpo_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        return self._g(state, self._check(batch))

    def sft_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        return self._sft(state, self._check(batch))

    def score(self, params, batch: dict) -> dict:
        return self._score(params, self._check(batch, batch_divisor(self.mesh)))


def make_steps(model_config: ModelConfig, train_config: TrainConfig, mesh) -> Steps:
    return Steps(model_config, train_config, mesh)
