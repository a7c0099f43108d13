"""VPD, GRPO and SDPO losses as small pure functions (DESIGN.md section 1).

Two layers:

* `token_stats_from_logits` / `chunked_token_stats` turn a student and a
  teacher view of the same response tokens into per-token numbers
  (log-prob of the sampled token on each side, the divergence, the student
  entropy). The chunked form starts from hidden states and the LM head and
  walks the response in chunks under `jax.checkpoint`, so neither pass nor
  its backward ever holds a [B, T, V] float32 tensor: only one [B, C, V]
  chunk per side is alive at a time.
* `m_step_loss`, `e_step_loss`, `grpo_loss` reduce those per-token numbers
  to a scalar. They take the normalisers (token counts, positive / negative
  counts) as arguments, computed once on the whole batch, so the loss of a
  micro-batch is its exact share of the full-batch loss and gradient
  accumulation is a plain sum. Every metric they return is additive too.

Which side is differentiated is decided by the caller with stop-gradients
(see steps.py); these functions never detach anything except the student
log-ratio reference in BCO, which the method itself defines as detached.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from vpd_jax import divergences as dv
from vpd_jax.models.layers import project

# Name of the per-chunk values the chunked backward keeps instead of
# recomputing: the detached side's top-k + tail log-probs and the top-k
# indices ([B, C, k + 1] each). Keeping them lets the backward skip the
# detached side's LM-head matmul and the top-k search altogether.
SAVED = "vpd_detached_support"


@dataclasses.dataclass(frozen=True)
class DivergenceSpec:
    """Which divergence a token-stats pass computes (static under jit)."""

    kind: str = "reverse_kl"  # reverse_kl | forward_kl | jsd | none (skip it)
    alpha: float = 0.5  # jsd: teacher weight in the mixture
    topk: int = 0  # 0: full vocabulary; k: top-k of `support` plus a tail bucket
    support: str = "student"  # whose top-k: student (M-step) | teacher (E-step KL)


# ------------------------------------------------------------- token stats
def token_stats_from_logits(s_logits: jax.Array, t_logits: jax.Array | None, targets: jax.Array,
                            spec: DivergenceSpec, grad_side: str | None = None) -> dict:
    """Per-token numbers from logits [..., V] and targets [...].

    Returns lp_s, ent_s and, with a teacher, lp_t, ent_t and div (all [...]).
    grad_side "student" detaches the teacher's logits (M-step, GRPO),
    "teacher" the student's (E-step), None neither (scoring).
    """
    if grad_side not in ("student", "teacher", None):
        raise ValueError(f"grad_side must be 'student', 'teacher' or None, got {grad_side!r}")
    if grad_side == "student" and t_logits is not None:
        t_logits = jax.lax.stop_gradient(t_logits)  # the teacher is a target, never trained here
    elif grad_side == "teacher":
        s_logits = jax.lax.stop_gradient(s_logits)  # the student is the trust-region reference
    if t_logits is not None and spec.kind != "none" and not 0 < spec.topk < s_logits.shape[-1]:
        # A full-vocabulary divergence needs both normalised [..., V] log-probs
        # anyway; every other number is read off them.
        ls, lt = dv.log_probs(s_logits), dv.log_probs(t_logits)
        return {"lp_s": dv.token_log_prob(ls, targets), "ent_s": dv.entropy(ls),
                "lp_t": dv.token_log_prob(lt, targets), "ent_t": dv.entropy(lt),
                "div": dv.divergence_from_logprobs(ls, lt, spec.kind, spec.alpha)}
    sparse = t_logits is not None and spec.kind != "none"
    idx = None
    if sparse:  # [..., k]; saved (SAVED), so the backward pass skips the top-k search
        idx = checkpoint_name(dv.topk_indices(s_logits, t_logits, spec.topk, spec.support), SAVED)
    lp_s, ent_s, s_sup = dv.logit_stats(s_logits, targets, idx)
    out = {"lp_s": lp_s, "ent_s": ent_s}
    if t_logits is not None:
        out["lp_t"], out["ent_t"], t_sup = dv.logit_stats(t_logits, targets, idx)
        if sparse:  # [..., k + 1]: small enough to keep for the backward pass
            if grad_side == "student":
                t_sup = checkpoint_name(t_sup, SAVED)
            elif grad_side == "teacher":
                s_sup = checkpoint_name(s_sup, SAVED)
            out["div"] = dv.divergence_from_logprobs(s_sup, t_sup, spec.kind, spec.alpha)
    return out


def _mixed_logits(terms, hs: tuple, ws: tuple) -> jax.Array:
    """sum_i c_i (h_i @ W_i): one teacher, or SDPO's mix of two."""
    out = None
    for (coef, _), h, w in zip(terms, hs, ws):
        z = coef * project(h, w, jnp.float32)  # [B, C, V]
        out = z if out is None else out + z
    return out


def chunked_token_stats(h_s: jax.Array, w_s: jax.Array, teacher, targets: jax.Array, spec: DivergenceSpec,
                        chunk: int = 128, grad_side: str | None = None) -> dict:
    """Per-token stats [B, R] from response hidden states, chunk by chunk.

    h_s [B, R, D] are the student's hidden states that predict targets [B, R];
    w_s [D, V] its LM head. `teacher` is None or a tuple of (coef, h [B, R, D],
    w [D, V]) terms whose logits are summed (one term with coef 1 normally).
    The differentiated side's chunk logits are recomputed in the backward
    pass (jax.checkpoint), which costs one extra LM-head matmul but keeps
    memory at O(B C V); with a top-k support the detached side's k + 1
    log-probs are kept instead (see SAVED), so its logits are not recomputed.
    """
    B, R, _ = h_s.shape
    teacher = tuple(teacher or ())
    C = max(1, min(chunk, R))
    pad = (-R) % C  # pad R up to a multiple of the chunk
    n = (R + pad) // C

    def split(x):  # [B, R, ...] -> [n, B, C, ...]
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        return jnp.moveaxis(x.reshape(B, n, C, *x.shape[2:]), 1, 0)

    meta = tuple((coef, i) for i, (coef, _, _) in enumerate(teacher))

    @functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.save_only_these_names(SAVED))
    def body(ws, wts, hs_c, hts_c, tgt_c):
        s_logits = project(hs_c, ws, jnp.float32)  # [B, C, V]
        t_logits = _mixed_logits(meta, hts_c, wts) if meta else None  # [B, C, V]
        return token_stats_from_logits(s_logits, t_logits, tgt_c, spec, grad_side)

    wts = tuple(w for _, _, w in teacher)
    xs = (split(h_s), tuple(split(h) for _, h, _ in teacher), split(targets))
    _, ys = jax.lax.scan(lambda c, x: (c, body(w_s, wts, *x)), None, xs)
    # [n, B, C] -> [B, R]
    return {k: jnp.moveaxis(v, 0, 1).reshape(B, n * C)[:, :R] for k, v in ys.items()}


# ------------------------------------------------------------- warm start
def sft_loss(lp: jax.Array, mask: jax.Array, n_tokens: jax.Array) -> tuple:
    """L_SFT = -sum_tokens log pi(y_t | x, y_<t) / N_tokens (masked NLL).

    lp, mask [B, R] over response tokens only: the prompt is context, never
    a target. n_tokens counts the whole batch, so micro-batches add up.
    """
    nll = -jnp.sum(mask * lp) / n_tokens
    return nll, {"nll": nll}


# ---------------------------------------------------------------- M-step
def m_step_loss(div: jax.Array, mask: jax.Array, n_tokens: jax.Array, weight: jax.Array | None = None) -> tuple:
    """L_M = sum_tokens w * D(pi || sg q) / N_tokens.

    div, mask [B, R]; mask already excludes rollouts with an empty context;
    n_tokens is the token count of the whole batch (all micro-batches);
    weight [B, R] is an optional detached importance weight
    (`prefix_importance_weight`).
    """
    w = mask if weight is None else mask * weight  # [B, R]
    loss = jnp.sum(w * div) / n_tokens  # token mean over the batch
    return loss, {"m_loss": loss, "divergence": jnp.sum(mask * div) / n_tokens}


def teacher_agrees(lp_t: jax.Array, lp_s: jax.Array, mask: jax.Array, reward: jax.Array) -> jax.Array:
    """1 where the teacher ranks a rollout the way its verdict does, else 0, [B].

    rho = sum_t (log q - log pi) over the response [B]: the teacher's
    implicit reward, the quantity the E-step trains (BCO). A teacher that
    gives a passing rollout more mass than the student (rho > 0), or a failing
    one less (rho < 0), points the student somewhere better; one that does the
    reverse (e.g. a critique that quotes the failing line and so primes a copy
    of it) would teach the failure. Gating the M-step on this keeps only the
    rows where distillation moves the student the way the verdict says.
    Detached: a selection, not a term to differentiate.
    """
    rho = jnp.sum(mask * (lp_t - lp_s), axis=-1)  # [B]
    agree = jnp.where(reward > 0.5, rho > 0, rho < 0)
    return jax.lax.stop_gradient(agree.astype(lp_s.dtype))


def prefix_importance_weight(lp_s: jax.Array, lp_old: jax.Array, mask: jax.Array, clip: float) -> jax.Array:
    """w_t = sg min(prod_{s<t} pi(y_s | .) / pi_old(y_s | .), clip), [B, R].

    Why the prefix and not the token's own ratio: the M-step objective is
    E_{y ~ pi}[sum_t D_t(y_<t)], and the per-position divergence D_t sums over
    the next token analytically, so it depends on the prefix y_<t alone.
    A rollout drawn from pi_old is reweighted to pi by the likelihood ratio of
    what D_t depends on, the prefix. The ratio of y_t itself multiplies a
    quantity that does not depend on y_t; its expectation under pi_old is 1,
    so it adds variance and corrects nothing. The weight of the first token
    is always 1, and on-policy (lp_s == lp_old) every weight is 1.

    Truncated (upper clip, in log space so long prefixes cannot overflow):
    bias for bounded variance, as truncated importance sampling does. It is
    detached: it rescales the divergence's gradient, it is not optimised.
    lp_s, lp_old, mask [B, R] (mask zeroes padding so it adds nothing).
    """
    d = mask * (lp_s - lp_old)  # [B, R] per-token log-ratio
    log_prefix = jnp.cumsum(d, axis=1) - d  # [B, R] sum over s < t (exclusive)
    return jax.lax.stop_gradient(jnp.exp(jnp.minimum(log_prefix, jnp.log(clip))))


# ---------------------------------------------------------------- E-step
def e_step_loss(lp_t: jax.Array, lp_s: jax.Array, kl: jax.Array, mask: jax.Array, reward: jax.Array,
                valid: jax.Array, delta: jax.Array, beta: float, lambda_kl: float, length_normalize: bool,
                n_pos: jax.Array, n_neg: jax.Array, n_tokens: jax.Array, n_rows: jax.Array) -> tuple:
    """L_E = L_BCO + lambda_kl * L_KL (BCO with reward shift delta).

    lp_t, lp_s, kl, mask [B, R]; reward, valid [B] (valid = real row with a
    context). n_pos, n_neg, n_tokens: counts over the whole batch (>= 1);
    n_rows: the batch's rows with a context, positives and negatives
    together (>= 1; not n_pos + n_neg, which are clamped to 1 each).
    Returns the loss and additive metrics, including the sums delta's update
    needs (sum of rtil over positives / n_pos, over negatives / n_neg).
    """
    pos = valid * (reward > 0.5)  # [B] successful rollouts
    neg = valid * (reward <= 0.5)  # [B] failed rollouts
    logratio = mask * (lp_t - jax.lax.stop_gradient(lp_s))  # [B, R] teacher vs detached student
    rho = jnp.sum(logratio, axis=1)  # [B] sequence log-ratio
    if length_normalize:
        rho = rho / jnp.maximum(jnp.sum(mask, axis=1), 1.0)  # per-token mean instead of sum
    rtil = beta * rho  # [B] implicit reward
    z = rtil - delta  # [B] shifted margin
    bco_pos = -jnp.sum(pos * jax.nn.log_sigmoid(z)) / n_pos  # positives pushed above delta
    bco_neg = -jnp.sum(neg * jax.nn.log_sigmoid(-z)) / n_neg  # negatives pushed below delta
    l_kl = jnp.sum(mask * kl) / n_tokens  # trust region to the detached current student
    loss = bco_pos + bco_neg + lambda_kl * l_kl
    correct = pos * (z > 0) + neg * (z <= 0)  # [B] BCO classifier right?
    metrics = {
        "e_loss": loss, "bco_loss": bco_pos + bco_neg, "kl": l_kl,
        "bco_accuracy": jnp.sum(correct) / n_rows,
        "rho_pos": jnp.sum(pos * rho) / n_pos, "rho_neg": jnp.sum(neg * rho) / n_neg,
        "rtil_pos": jnp.sum(pos * rtil) / n_pos, "rtil_neg": jnp.sum(neg * rtil) / n_neg,
    }
    return loss, metrics


def update_delta(delta: jax.Array, rtil_pos: jax.Array, rtil_neg: jax.Array, has_pos: jax.Array,
                 has_neg: jax.Array, momentum: float) -> jax.Array:
    """delta <- m delta + (1 - m) (mean rtil+ + mean rtil-) / 2, never differentiated.

    With only one class in the batch its mean alone is the target; with none,
    delta is kept.
    """
    n = has_pos + has_neg  # how many class means exist (0, 1 or 2)
    target = (has_pos * rtil_pos + has_neg * rtil_neg) / jnp.maximum(n, 1.0)
    new = momentum * delta + (1.0 - momentum) * target
    return jax.lax.stop_gradient(jnp.where(n > 0, new, delta))


# ------------------------------------------------------------------ GRPO
def group_advantages(reward: jax.Array, group: jax.Array, valid: jax.Array, dr_grpo: bool,
                     eps: float = 1e-6) -> jax.Array:
    """A_i = r_i - mean_group(r), divided by the group's std unless Dr.GRPO.

    reward, group, valid [B]; the std is the unbiased one (n - 1), and a group
    of one row gets advantage 0. Padding rows (valid 0) join no group.
    """
    same = (group[:, None] == group[None, :]) * valid[None, :]  # [B, B] row j counts in i's group
    n = jnp.sum(same, axis=1)  # [B] group sizes
    mean = jnp.sum(same * reward[None, :], axis=1) / jnp.maximum(n, 1.0)  # [B]
    adv = reward - mean  # [B]
    if not dr_grpo:
        var = jnp.sum(same * (reward[None, :] - mean[:, None]) ** 2, axis=1) / jnp.maximum(n - 1.0, 1.0)
        adv = adv / (jnp.sqrt(var) + eps)  # group-normalised
    return valid * jnp.where(n > 1, adv, 0.0)


def grpo_loss(lp: jax.Array, lp_old: jax.Array, adv: jax.Array, mask: jax.Array, clip_low: float,
              clip_high: float, denom: jax.Array, lp_ref: jax.Array | None = None, kl_coef: float = 0.0,
              n_tokens: jax.Array | None = None) -> tuple:
    """Clipped token-level surrogate, -sum min(r A, clip(r) A) / denom (+ KL).

    lp, lp_old, mask [B, R]; adv [B]. denom is the batch's token count
    (GRPO / DAPO token mean) or rows x the response budget (Dr.GRPO's
    constant normaliser: it must not depend on the batch's lengths, or the
    length bias Dr.GRPO removes comes back through the gradient scale).
    The KL to a fixed reference is the k3 estimator exp(d) - d - 1,
    d = l_ref - l, which is >= 0 and unbiased for KL(pi || ref). Metrics are
    token means over n_tokens (default: denom).
    """
    n_tokens = denom if n_tokens is None else n_tokens
    ratio = jnp.exp(lp - lp_old)  # [B, R] importance ratio to the sampler
    a = adv[:, None]  # [B, 1]
    surr = jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high) * a)  # pessimistic bound
    per_tok = -surr  # [B, R]
    metrics = {}
    if lp_ref is not None and kl_coef > 0:
        d = lp_ref - lp  # [B, R]
        k3 = jnp.exp(d) - d - 1.0  # [B, R] KL estimate
        per_tok = per_tok + kl_coef * k3
        metrics["kl_ref"] = jnp.sum(mask * k3) / n_tokens
    loss = jnp.sum(mask * per_tok) / denom
    clipped = (ratio < 1.0 - clip_low) | (ratio > 1.0 + clip_high)
    metrics.update(grpo_loss=loss, clip_fraction=jnp.sum(mask * clipped) / n_tokens)
    return loss, metrics
