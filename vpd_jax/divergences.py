"""Per-token divergences between two next-token distributions, from logits.

Every function here maps logits [..., V] to one number per token [...]. The
caller decides which side carries gradients (by stop-gradient on the other
side's logits), so the same code serves the M-step (student trained, teacher
detached) and the E-step (teacher trained, student detached).

Conventions: `s` is the student pi(.|x, y_<t), `t` the teacher
q(.|C, y_<t), both over the same vocabulary.

    reverse_kl   KL(s || t) = sum_v s_v (log s_v - log t_v)   (mode seeking)
    forward_kl   KL(t || s) = sum_v t_v (log t_v - log s_v)   (mass covering)
    jsd(alpha)   alpha KL(t || m) + (1 - alpha) KL(s || m),
                 m = alpha t + (1 - alpha) s                  (bounded)

Support: the full vocabulary, or the top-k tokens of one side plus one tail
bucket per side holding the remaining mass log(1 - sum_{top-k} p). Both
sides are evaluated on the same k indices, so each side's k + 1 numbers are
a proper distribution and the divergence stays >= 0. The tail is computed as
a log-sum-exp over the tokens outside the top-k (not as log(1 - sum p)),
which is the same number without the cancellation when the top-k holds
nearly all the mass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DIVERGENCES = ("reverse_kl", "forward_kl", "jsd")
SUPPORTS = ("student", "teacher")

# Finite stand-in for log(0) on masked-out vocabulary entries: exp() of it
# is exactly 0, and differences of two such values stay finite (no 0 * inf).
_NEG = -1e30


def log_probs(logits: jax.Array) -> jax.Array:
    """Normalised log-probabilities in float32, [..., V] -> [..., V]."""
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def token_log_prob(logp: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target) per token: logp [..., V], targets [...] -> [...]."""
    return jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy(logp: jax.Array) -> jax.Array:
    """H(p) = -sum_v p_v log p_v, [..., V] -> [...]."""
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def _kl(logp: jax.Array, logq: jax.Array) -> jax.Array:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) over the last axis."""
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def divergence_from_logprobs(ls: jax.Array, lt: jax.Array, kind: str, alpha: float = 0.5) -> jax.Array:
    """D(s, t) per token from two normalised log-distributions [..., S]."""
    if kind == "reverse_kl":
        return _kl(ls, lt)  # KL(s || t)
    if kind == "forward_kl":
        return _kl(lt, ls)  # KL(t || s)
    if kind == "jsd":
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"jsd_alpha must be in (0, 1), got {alpha}; use forward_kl / reverse_kl at the ends")
        # log m = log(alpha t + (1 - alpha) s), stably in log space
        lm = jnp.logaddexp(jnp.log(alpha) + lt, jnp.log1p(-alpha) + ls)
        return alpha * _kl(lt, lm) + (1.0 - alpha) * _kl(ls, lm)
    raise ValueError(f"unknown divergence {kind!r}; choose one of {DIVERGENCES}")


def topk_with_tail(logits: jax.Array, idx: jax.Array) -> jax.Array:
    """Log-probs of the k chosen tokens plus the tail bucket: [..., V] -> [..., k + 1].

    idx [..., k] are vocabulary indices (the same for both sides).
    """
    x = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(x, axis=-1, keepdims=True)  # [..., 1] log Z
    top = jnp.take_along_axis(x, idx, axis=-1) - lse  # [..., k] log p_v, v in top-k
    in_top = jnp.put_along_axis(jnp.zeros(x.shape, bool), idx, True, axis=-1, inplace=False)  # [..., V]
    # log(1 - sum_{top-k} p) = logsumexp over the tokens outside the top-k - log Z
    tail = jax.nn.logsumexp(jnp.where(in_top, _NEG, x), axis=-1, keepdims=True) - lse  # [..., 1]
    return jnp.concatenate([top, tail], axis=-1)


def logit_stats(logits: jax.Array, targets: jax.Array, idx: jax.Array | None = None) -> tuple:
    """log p(target) [...], entropy [...] and, given top-k indices idx [..., k],
    the top-k + tail log-probs [..., k + 1], from logits [..., V].

    The same numbers as token_log_prob / entropy / topk_with_tail on
    log_probs(logits), from one max and one exp over the vocabulary instead
    of four: at a 49k-151k vocabulary these passes, not the LM-head matmul,
    were a third of the loss's time on a CPU. Every sum is of non-negative
    terms (no cancellation): with e = exp(x - max) and Z = sum e,
    H = log Z + sum e (max - x) / Z, and the tail is log(sum_{v not in top-k} e / Z).
    """
    x = logits.astype(jnp.float32)
    top = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))  # [..., 1]; the result does not depend on it
    e = jnp.exp(x - top)  # [..., V]
    z = jnp.sum(e, axis=-1, keepdims=True)
    lse = top + jnp.log(z)  # [..., 1] log Z
    lp = jnp.take_along_axis(x, targets[..., None].astype(jnp.int32), axis=-1)[..., 0] - lse[..., 0]
    ent = jnp.log(z[..., 0]) + jnp.sum(e * (top - x), axis=-1) / z[..., 0]
    if idx is None:
        return lp, ent, None
    in_top = jnp.put_along_axis(jnp.zeros(x.shape, bool), idx, True, axis=-1, inplace=False)  # [..., V]
    # The smallest normal float32 keeps log finite when every tail term
    # underflows (a top-k holding all but < 1e-38 of the mass).
    z_tail = jnp.maximum(jnp.sum(jnp.where(in_top, 0.0, e), axis=-1, keepdims=True), jnp.finfo(jnp.float32).tiny)
    sup = jnp.concatenate([jnp.take_along_axis(x, idx, axis=-1) - lse, jnp.log(z_tail) - jnp.log(z)], axis=-1)
    return lp, ent, sup


def topk_indices(s_logits: jax.Array, t_logits: jax.Array, topk: int, support: str = "student") -> jax.Array:
    """The divergence support: top-k vocabulary indices [..., k] of `support`'s logits (no gradient)."""
    if support not in SUPPORTS:
        raise ValueError(f"top-k support must be one of {SUPPORTS}, got {support!r}")
    chooser = s_logits if support == "student" else t_logits
    return jax.lax.top_k(jax.lax.stop_gradient(chooser).astype(jnp.float32), topk)[1]


def support_logprobs(s_logits: jax.Array, t_logits: jax.Array, topk: int = 0,
                     support: str = "student") -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Both sides' log-distributions on the divergence's support.

    Returns (ls, lt, idx): [..., V] each and idx None for the full
    vocabulary (topk = 0), else [..., k + 1] each (top-k of `support`'s
    logits plus the tail bucket) and the chosen indices idx [..., k].
    """
    if topk <= 0 or topk >= s_logits.shape[-1]:
        return log_probs(s_logits), log_probs(t_logits), None
    idx = topk_indices(s_logits, t_logits, topk, support)  # [..., k]
    return topk_with_tail(s_logits, idx), topk_with_tail(t_logits, idx), idx


def divergence(s_logits: jax.Array, t_logits: jax.Array, kind: str = "reverse_kl", alpha: float = 0.5,
               topk: int = 0, support: str = "student") -> jax.Array:
    """D(student, teacher) per token, [..., V] x [..., V] -> [...].

    topk = 0 uses the full vocabulary; topk > 0 the top-k of `support`'s
    logits plus one tail bucket per side.
    """
    ls, lt, _ = support_logprobs(s_logits, t_logits, topk, support)
    return divergence_from_logprobs(ls, lt, kind, alpha)
