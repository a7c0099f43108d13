"""Choosing the next token from a row's logits: greedy, or a draw after
temperature, top-k and top-p, and the log-prob of the chosen token under
the untempered policy (what the losses score as old_logp).

Pure functions of a `SamplingConfig` (read for its temperature / top_k /
top_p / greedy fields) and [B, V] float32 logits, run inside the sampler's
jitted prefill and decode loop once per generated token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # the config's module imports this one
    from vpd_jax.sampling import SamplingConfig


def _filter_logits(cfg: SamplingConfig, logits: jax.Array) -> jax.Array:
    """Tempered logits [B, V] with everything outside top-k / top-p at -inf.

    The cut is a per-row threshold value. Top-k takes it from `lax.top_k`;
    top-p over the k survivors from their cumulative mass; top-p over the
    whole vocabulary bisects for it (no [B, V] sort, ~10x cheaper on CPU).
    With neither, nothing is computed. Tokens tied with the threshold are
    all kept.
    """
    x = logits / cfg.temperature
    if cfg.top_k == 0 and cfg.top_p >= 1:
        return x
    if cfg.top_k == 0:
        threshold = _top_p_threshold(x, cfg.top_p)
    else:
        desc, _ = jax.lax.top_k(x, min(cfg.top_k, x.shape[-1]))  # [B, k], largest first
        threshold = desc[:, -1:]
        if cfg.top_p < 1:
            probs = jax.nn.softmax(desc, axis=-1)  # renormalised over the top-k survivors, as HF orders them
            mass_before = jnp.cumsum(probs, axis=-1) - probs  # [B, k]
            n_keep = jnp.maximum(jnp.sum(mass_before < cfg.top_p, axis=-1), 1)  # [B]
            threshold = jnp.take_along_axis(desc, (n_keep - 1)[:, None], axis=-1)  # [B, 1]
    return jnp.where(x >= threshold, x, -jnp.inf)


def _top_p_threshold(x: jax.Array, top_p: float, iters: int = 48) -> jax.Array:
    """[B, 1]: the largest logit value t whose tokens {x >= t} hold at least
    top_p of the mass: the nucleus boundary, found by bisection.

    Invariant: mass(lo) >= top_p > mass(hi). Float bisection ends with lo and
    hi adjacent, where lo is exactly the boundary token's logit.
    """
    probs = jax.nn.softmax(x, axis=-1)  # [B, V]
    mass = lambda t: jnp.sum(jnp.where(x >= t, probs, 0.0), axis=-1, keepdims=True)  # [B, 1]

    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) / 2
        ok = mass(mid) >= top_p
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo = jnp.min(x, axis=-1, keepdims=True)  # mass 1
    hi = jnp.max(x, axis=-1, keepdims=True) + 1.0  # mass 0
    lo, _ = jax.lax.fori_loop(0, iters, halve, (lo, hi))
    return lo


_BLOCK = 256  # the inverse CDF's two levels: vocabulary blocks of this many tokens, then one block


def _inverse_cdf(weights: jax.Array, u: jax.Array) -> jax.Array:
    """[B] int32: per row, the token whose cumulative mass interval holds
    u x total mass: a draw from weights [B, V] (>= 0, unnormalised) with
    one uniform u [B] per row.

    Two levels, so no [B, V] cumulative sum: block masses [B, V/256], their
    running total picks the block, a 256-long running total inside it picks
    the token. A zero-mass token never covers an interval, and the result is
    clamped to the row's first / last nonzero token against float rounding
    at the ends, so a filtered-out token is never drawn.
    """
    B, V = weights.shape
    nb = -(-V // _BLOCK)
    blocks = jnp.pad(weights, ((0, 0), (0, nb * _BLOCK - V))).reshape(B, nb, _BLOCK)
    block_mass = jnp.sum(blocks, axis=-1)  # [B, nb]
    upto = jnp.cumsum(block_mass, axis=-1)  # [B, nb]
    target = u * upto[:, -1]  # [B]
    last_block = nb - 1 - jnp.argmax(block_mass[:, ::-1] > 0, axis=-1)
    b = jnp.minimum(jnp.sum(upto <= target[:, None], axis=-1), last_block)  # [B]
    inner = jnp.take_along_axis(blocks, b[:, None, None], axis=1)[:, 0]  # [B, BLOCK]
    rest = target - jnp.take_along_axis(upto - block_mass, b[:, None], axis=1)[:, 0]  # [B] mass into block b
    first_in = jnp.argmax(inner > 0, axis=-1)
    last_in = _BLOCK - 1 - jnp.argmax(inner[:, ::-1] > 0, axis=-1)
    j = jnp.clip(jnp.sum(jnp.cumsum(inner, axis=-1) <= rest[:, None], axis=-1), first_in, last_in)
    return (b * _BLOCK + j).astype(jnp.int32)


def choose_tokens(cfg: SamplingConfig, logits: jax.Array, row_keys: jax.Array, step: jax.Array):
    """logits [B, V] f32 -> (tokens [B] int32, log-probs [B] of those tokens
    under log_softmax(logits): the untempered policy the losses score).

    One exp pass over [B, V] serves both the log-probs and, at temperature 1
    without top-k / top-p, the draw; one uniform per row replaces the [B, V]
    random bits and logs of a Gumbel-max draw.
    """
    top = jnp.max(logits, axis=-1, keepdims=True)  # [B, 1]
    e = jnp.exp(logits - top)  # [B, V]
    lse = top[:, 0] + jnp.log(jnp.sum(e, axis=-1))  # [B]
    if cfg.greedy:
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    else:
        u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, step)))(row_keys)  # [B], one per row and step
        if cfg.temperature == 1 and cfg.top_k == 0 and cfg.top_p >= 1:
            weights = e
        else:
            x = _filter_logits(cfg, logits)
            weights = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))  # filtered tokens: exp(-inf) = 0
        tokens = _inverse_cdf(weights, u)
    return tokens, jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0] - lse
