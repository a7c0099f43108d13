"""The building blocks of a Llama/Qwen3 layer, as pure functions.

Numerics follow transformers' reference implementation: RMSNorm and softmax
in float32, rotary embedding in the "rotate half" layout (HF checkpoints'
layout; GGUF's interleaved layout is undone at load time).
"""

from __future__ import annotations

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
    return inv.astype(np.float32)


def rope_angles(config: ModelConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos, sin of shape [B, T, hd/2] for integer positions [B, T]."""
    ang = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(config))  # [B, T, hd/2]
    return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates x [B, T, N, hd] by position (rotate-half layout)."""
    half = x.shape[-1] // 2
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., :half], x32[..., half:]
    c, s = cos[:, :, None, :], sin[:, :, None, :]  # [B, T, 1, hd/2]
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1).astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Grouped-query attention.

    q [B, T, H, hd]; k, v [B, S, K, hd]; mask [B, T, S] (True = may attend).
    Query head h reads KV head h // (H // K), as transformers' repeat_kv.
    """
    B, T, H, hd = q.shape
    K = k.shape[2]
    qg = q.reshape(B, T, K, H // K, hd)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)  # [B, K, G, T, S]
    scores = scores * (hd ** -0.5)
    scores = jnp.where(mask[:, None, None, :, :], scores, MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)  # [B, T, K, G, hd]
    return out.reshape(B, T, H, hd)


def causal_flash_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Causal grouped-query attention through cuDNN's fused kernel.

    q [B, T, H, hd]; k, v [B, T, K, hd] -> [B, T, H, hd]. The kernel never
    writes the [B, H, T, S] scores to memory and skips the masked half, which
    at 1k+ tokens is most of the einsum path's time and memory on a GPU.
    Only a causal mask: valid for unpadded or right-padded rows (the packed
    training layout), where every pad key lies after every real query.
    """
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")


def swiglu(x: jax.Array, gate: jax.Array, up: jax.Array, down: jax.Array) -> jax.Array:
    """down(silu(x gate) * (x up)); x [B, T, D] -> [B, T, D]."""
    g = jnp.einsum("btd,df->btf", x, gate)
    u = jnp.einsum("btd,df->btf", x, up)
    return jnp.einsum("btf,fd->btd", jax.nn.silu(g) * u, down)
