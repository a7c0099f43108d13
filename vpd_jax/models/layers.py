"""The building blocks of a Llama/Qwen3 layer, as pure functions.

Numerics follow transformers' reference implementation: RMSNorm and softmax
in float32, rotary embedding in the "rotate half" layout (HF checkpoints'
layout; GGUF's interleaved layout is undone at load time).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vpd_jax.models.config import ModelConfig

# Finite, so a fully masked row (a left-pad query) softmaxes to uniform
# instead of NaN; its output is never used.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """x / rms(x) * weight, computed in float32, returned in x's dtype."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (weight.astype(jnp.float32) * y).astype(x.dtype)


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
    """Inverse frequencies [hd/2] with the configured scaling (numpy, static)."""
    hd = config.head_dim
    inv = 1.0 / (config.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    kind, r = config.rope_type, config.rope_dict
    if kind == "linear":
        inv = inv / r["factor"]
    elif kind == "llama3":
        # Llama 3.1: long wavelengths slowed by `factor`, short ones kept,
        # a smooth blend in between (the published scaling rule).
        factor, lo, hi = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
        old_ctx = r["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old_ctx / lo, inv / factor, inv)
        smooth = (old_ctx / wavelen - lo) / (hi - lo)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_ctx / hi) & (wavelen <= old_ctx / lo)
        inv = np.where(medium, blended, scaled)
    elif kind == "freq_factors":  # llama.cpp divides each frequency by its stored factor
        inv = inv / np.asarray(r["factors"], dtype=np.float64)
    elif kind == "yarn":
        # YaRN (OLMo-3's long-context layers): frequencies that turn fewer than
        # beta_slow times over the original context are interpolated (/ factor),
        # those turning more than beta_fast times are kept, a linear ramp over
        # the dimensions in between.
        old_ctx = r.get("original_max_position_embeddings", config.max_position_embeddings)

        def dim_of(turns):  # the (fractional) dimension index whose frequency turns `turns` times in old_ctx
            return hd * math.log(old_ctx / (turns * 2 * math.pi)) / (2 * math.log(config.rope_theta))

        lo, hi = dim_of(r.get("beta_fast") or 32), dim_of(r.get("beta_slow") or 1)
        if r.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, hd - 1)
        ramp = np.clip((np.arange(hd // 2) - lo) / ((hi - lo) or 0.001), 0, 1)  # 0: keep, 1: interpolate
        inv = inv / r["factor"] * ramp + inv * (1 - ramp)
    return inv.astype(np.float32)


def rope_attention_factor(config: ModelConfig) -> float:
    """YaRN's scale of cos and sin (so of the attention logits); 1 otherwise."""
    r = config.rope_dict
    if config.rope_type != "yarn":
        return 1.0
    if r.get("attention_factor") is not None:
        return float(r["attention_factor"])
    mscale = lambda m: 1.0 if r["factor"] <= 1 else 0.1 * m * math.log(r["factor"]) + 1.0
    if r.get("mscale") and r.get("mscale_all_dim"):
        return mscale(r["mscale"]) / mscale(r["mscale_all_dim"])
    return mscale(1.0)


def rope_angles(config: ModelConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos, sin of shape [B, T, hd/2] for integer positions [B, T]."""
    ang = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(config))  # [B, T, hd/2]
    scale = rope_attention_factor(config)
    if scale == 1.0:
        return jnp.cos(ang), jnp.sin(ang)
    return jnp.cos(ang) * scale, jnp.sin(ang) * scale


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates x [B, T, N, hd] by position (rotate-half layout)."""
    half = x.shape[-1] // 2
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., :half], x32[..., half:]
    c, s = cos[:, :, None, :], sin[:, :, None, :]  # [B, T, 1, hd/2]
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1).astype(x.dtype)


def _transposed(a: jax.Array) -> jax.Array:
    """a.T [C, R] of a [R, C], written out. The barrier keeps XLA from folding
    the transpose back into the matmul, where XLA:CPU's layout assignment
    would instead transpose the other operand, which can be far larger
    (the [N, V] logits gradient against the [N, D] hidden states)."""
    return jax.lax.optimization_barrier(a.T)


def weight_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
    """x^T dy [I, O], summed over the leading (token) axes of x [..., I] and
    dy [..., O]: a weight gradient.

    The token axis is the contracted one, the major axis of both operands,
    so one of them must be transposed in memory. Transpose the cheaper
    side: x (N x I elements), or dy and the [O, I] product (N x O + O x I).
    Accumulates in float32 whatever the operands' dtype.
    """
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # [N, I], [N, O]
    (n, i), o = x2.shape, dy2.shape[1]
    if n * i <= n * o + o * i:
        g = jnp.dot(_transposed(x2), dy2, preferred_element_type=jnp.float32)  # [I, O]
    else:
        g = jnp.dot(_transposed(dy2), x2, preferred_element_type=jnp.float32).T  # [O, I] -> [I, O]
    return jax.lax.optimization_barrier(g)  # a transposing consumer must not fold into this dot either


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def project(x: jax.Array, w: jax.Array, out_dtype=None) -> jax.Array:
    """x [..., I] @ w [I, O] -> [..., O] (in out_dtype, default x's).

    A plain matmul whose backward computes the weight gradient with
    weight_grad: for the LM head ([N, D] x [D, V]) autodiff on XLA:CPU
    transposes the whole [N, V] logits gradient instead of [N, D].
    """
    return jnp.einsum("...i,io->...o", x, w, preferred_element_type=out_dtype)


def _project_fwd(x, w, out_dtype):
    return project(x, w, out_dtype), (x, w)


def _project_bwd(out_dtype, res, dy):
    x, w = res
    dx = jnp.einsum("...o,io->...i", dy, w, preferred_element_type=jnp.float32).astype(x.dtype)
    return dx, weight_grad(x, dy).astype(w.dtype)


project.defvjp(_project_fwd, _project_bwd)


def _grouped_scores(q: jax.Array, k: jax.Array, mask: jax.Array) -> jax.Array:
    """Scaled, masked float32 scores [B, K, G, T, S] of q [B, T, H, hd] against
    k [B, S, K, hd]; query head h reads KV head h // G (transformers' repeat_kv)."""
    B, T, H, hd = q.shape
    K = k.shape[2]
    qg = q.reshape(B, T, K, H // K, hd)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * (hd ** -0.5)
    return jnp.where(mask[:, None, None, :, :], scores, MASK_VALUE)


def _attention_fwd(q, k, v, mask):
    B, T, H, hd = q.shape
    K = k.shape[2]
    scores = _grouped_scores(q, k, mask)  # [B, K, G, T, S]
    top = jnp.max(scores, axis=-1, keepdims=True)
    e = jnp.exp(scores - top)
    total = jnp.sum(e, axis=-1, keepdims=True)
    probs = (e / total).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(B, T, H, hd)  # [B, T, H, hd]
    return out, (q, k, v, mask, out, top, total)


def _attention_bwd(res, d_out):
    """The softmax-attention backward from (q, k, v, out) and the softmax's
    row max and sum: the [B, K, G, T, S] probabilities are recomputed from q
    and k (bit for bit the forward's) instead of being saved per layer, as
    flash attention's backward does. (Max and sum rather than their
    logsumexp: a fully masked row's MASK_VALUE + log S rounds to MASK_VALUE.)"""
    q, k, v, mask, out, top, total = res
    B, T, H, hd = q.shape
    K = k.shape[2]
    probs = jnp.exp(_grouped_scores(q, k, mask) - top) / total  # [B, K, G, T, S]
    d_og = d_out.reshape(B, T, K, H // K, hd)
    dv = jnp.einsum("bkgts,btkgd->bskd", probs.astype(v.dtype), d_og)
    dp = jnp.einsum("btkgd,bskd->bkgts", d_og, v, preferred_element_type=jnp.float32)
    # d softmax: p * (dp - sum_s p dp), and sum_s p dp = <d_out, out> per query
    rowdot = jnp.einsum("btkgd,btkgd->bkgt", d_og.astype(jnp.float32),
                        out.reshape(B, T, K, H // K, hd).astype(jnp.float32))
    ds = probs * (dp - rowdot[..., None]) * (hd ** -0.5)  # [B, K, G, T, S]
    ds = jnp.where(mask[:, None, None, :, :], ds, 0.0).astype(q.dtype)  # masked scores were constants
    dq = jnp.einsum("bkgts,bskd->btkgd", ds, k).reshape(B, T, H, hd)
    dk = jnp.einsum("bkgts,btkgd->bskd", ds, q.reshape(B, T, K, H // K, hd))
    return dq, dk, dv, None


@jax.custom_vjp
def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Grouped-query attention.

    q [B, T, H, hd]; k, v [B, S, K, hd]; mask [B, T, S] (True = may attend).
    Query head h reads KV head h // (H // K), as transformers' repeat_kv.
    The custom VJP keeps only the softmax's row max and sum [B, K, G, T]
    per layer for the backward, not the [B, K, G, T, S] probabilities (nor
    the masked scores that autodiff would also keep): on a layer scan those
    are the largest saved activations, written and re-read once per layer
    per step.
    """
    return _attention_fwd(q, k, v, mask)[0]


attention.defvjp(_attention_fwd, _attention_bwd)


def causal_flash_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Causal grouped-query attention through cuDNN's fused kernel.

    q [B, T, H, hd]; k, v [B, T, K, hd] -> [B, T, H, hd]. The kernel never
    writes the [B, H, T, S] scores to memory and skips the masked half, which
    at 1k+ tokens is most of the einsum path's time and memory on a GPU.
    Only a causal mask: valid for unpadded or right-padded rows (the packed
    training layout), where every pad key lies after every real query.
    """
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")


def _gate(g: jax.Array, act: str) -> tuple[jax.Array, jax.Array]:
    """act(g) and its derivative, elementwise: silu (SwiGLU) or gelu's tanh
    approximation (Gemma's GeGLU, torch's gelu(approximate="tanh"))."""
    if act == "silu":
        s = jax.nn.sigmoid(g)
        return g * s, s * (1 + g * (1 - s))  # silu'(g) = s (1 + g (1 - s))
    c = math.sqrt(2 / math.pi)
    t = jnp.tanh(c * (g + 0.044715 * g ** 3))
    return 0.5 * g * (1 + t), 0.5 * (1 + t) + 0.5 * g * (1 - t * t) * c * (1 + 3 * 0.044715 * g * g)


def _gated_mlp_fwd(x, gate, up, down, act):
    g = jnp.einsum("btd,df->btf", x, gate)  # [B, T, F]
    u = jnp.einsum("btd,df->btf", x, up)
    a = jax.nn.silu(g) if act == "silu" else jax.nn.gelu(g, approximate=True)
    return jnp.einsum("btf,fd->btd", a * u, down), (x, gate, up, down, g, u)


def _gated_mlp_bwd(act, res, dy):
    """Backward from (x, g, u): the activation and its derivative are
    recomputed (elementwise, cheap) rather than saved per layer."""
    x, gate, up, down, g, u = res
    a, da = _gate(g, act)
    d_act = jnp.einsum("btd,fd->btf", dy, down)  # [B, T, F]
    du = d_act * a
    dg = d_act * u * da
    dx = jnp.einsum("btf,df->btd", dg, gate) + jnp.einsum("btf,df->btd", du, up)
    x_t = _transposed(x.reshape(-1, x.shape[-1]))  # [D, N], shared by the gate and up gradients
    d_gate = jnp.dot(x_t, dg.reshape(-1, dg.shape[-1]), preferred_element_type=jnp.float32)  # [D, F]
    d_up = jnp.dot(x_t, du.reshape(-1, du.shape[-1]), preferred_element_type=jnp.float32)
    return (dx, d_gate.astype(gate.dtype), d_up.astype(up.dtype),
            weight_grad(a * u, dy).astype(down.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def gated_mlp(x: jax.Array, gate: jax.Array, up: jax.Array, down: jax.Array, act: str = "silu") -> jax.Array:
    """down(act(x gate) * (x up)); x [B, T, D] -> [B, T, D].

    The custom VJP saves the two [B, T, F] pre-activations per layer instead
    of the five intermediates autodiff keeps (g, sigmoid, silu, u, product).
    """
    return _gated_mlp_fwd(x, gate, up, down, act)[0]


gated_mlp.defvjp(lambda x, gate, up, down, act: _gated_mlp_fwd(x, gate, up, down, act), _gated_mlp_bwd)


def swiglu(x: jax.Array, gate: jax.Array, up: jax.Array, down: jax.Array) -> jax.Array:
    """down(silu(x gate) * (x up)): the Llama / Qwen3 / OLMo-3 MLP."""
    return gated_mlp(x, gate, up, down, "silu")
