"""The decoder: pure functions of (config, params, tokens).

`forward` is the training / scoring pass: it scans one layer body over the
stacked layer axis of the params. The sampler's pass over a KV cache is in
decode.py, on weights converted for decoding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.layers import (apply_rope, attention, causal_flash_attention, project, rms_norm, rope_angles,
                                   swiglu)

_REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def default_positions(tokens: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Positions [B, T]: 0.. per row, counting only real tokens (left padding
    gets position 0 and is masked out anyway)."""
    if mask is None:
        return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)


def _qkv(config: ModelConfig, lp: dict, x: jax.Array, cos, sin):
    """Normalised input -> rotated q [B, T, H, hd], k and v [B, T, K, hd]."""
    cdt = jnp.dtype(config.compute_dtype)
    h = rms_norm(x, lp["attn_norm"], config.rms_norm_eps)
    q = jnp.einsum("btd,dhk->bthk", h, lp["q"].astype(cdt))
    k = jnp.einsum("btd,dhk->bthk", h, lp["k"].astype(cdt))
    v = jnp.einsum("btd,dhk->bthk", h, lp["v"].astype(cdt))
    if config.qk_norm:  # Qwen3: per-head RMSNorm of q and k before rotation
        q = rms_norm(q, lp["q_norm"], config.rms_norm_eps)
        k = rms_norm(k, lp["k_norm"], config.rms_norm_eps)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def _finish_layer(config: ModelConfig, lp: dict, x: jax.Array, attn: jax.Array) -> jax.Array:
    """Attention output projection + residual, then the MLP block + residual."""
    cdt = jnp.dtype(config.compute_dtype)
    x = x + jnp.einsum("bthk,hkd->btd", attn, lp["o"].astype(cdt))
    h = rms_norm(x, lp["mlp_norm"], config.rms_norm_eps)
    return x + swiglu(h, lp["gate"].astype(cdt), lp["up"].astype(cdt), lp["down"].astype(cdt))


def attention_impl(config: ModelConfig) -> str:
    """The training-pass attention kernel config.attention resolves to here.

    "auto" picks cuDNN flash attention on an NVIDIA GPU with 16-bit compute
    and a head size it supports, else the XLA einsum path. An explicit
    "cudnn" where it cannot run is a configuration error, said up front
    rather than as a lowering failure deep inside the step's compile.
    """
    supported = (jax.default_backend() == "gpu"
                 and jnp.dtype(config.compute_dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
                 and config.head_dim % 8 == 0 and config.head_dim <= 128)
    if config.attention == "cudnn" and not supported:
        raise ValueError(
            f"ModelConfig.attention='cudnn' needs an NVIDIA GPU backend (have {jax.default_backend()!r}), "
            f"compute_dtype bfloat16/float16 (have {config.compute_dtype!r}) and head_dim a multiple of 8 "
            f"up to 128 (have {config.head_dim}); use attention='auto' or 'xla'")
    if config.attention == "auto":
        return "cudnn" if supported else "xla"
    return config.attention


def embed(config: ModelConfig, params: dict, tokens: jax.Array) -> jax.Array:
    return jnp.take(params["embed"], tokens, axis=0).astype(config.compute_dtype)  # [B, T, D]


def hidden_states(config: ModelConfig, params: dict, tokens: jax.Array, positions: jax.Array | None = None,
                  mask: jax.Array | None = None, right_padded: bool = False) -> jax.Array:
    """Final-normed hidden states [B, T, D] in the compute dtype.

    mask [B, T] marks real tokens (False on padding); attention is causal
    over token index and never reads a padded key. right_padded=True promises
    that every row's padding follows its real tokens (packing.pack_rows'
    layout): causality alone then hides the pad keys, which lets the fused
    causal kernel run (config.attention, even T); pad positions' outputs are
    garbage either way and must stay masked by the caller.
    """
    if positions is None:
        positions = default_positions(tokens, mask)
    T = tokens.shape[1]
    # The fused kernel takes only a causal mask, and in training only an even
    # length; other calls (left padding, odd lengths) keep the einsum path.
    fused = attention_impl(config) == "cudnn" and (mask is None or right_padded) and T % 2 == 0
    if not fused:
        causal = jnp.tril(jnp.ones((T, T), bool))  # [T, S]
        attn_mask = causal[None] if mask is None else causal[None] & mask.astype(bool)[:, None, :]
        attn_mask = jnp.broadcast_to(attn_mask, (tokens.shape[0], T, T))
    cos, sin = rope_angles(config, positions)

    def layer(x, lp):
        q, k, v = _qkv(config, lp, x, cos, sin)
        attn = causal_flash_attention(q, k, v) if fused else attention(q, k, v, attn_mask)
        return _finish_layer(config, lp, x, attn), None

    if config.remat != "none":
        layer = jax.checkpoint(layer, policy=_REMAT_POLICIES[config.remat], prevent_cse=False)
    x, _ = jax.lax.scan(layer, embed(config, params, tokens), params["layers"])
    return rms_norm(x, params["final_norm"], config.rms_norm_eps)


def lm_head_weight(config: ModelConfig, params: dict) -> jax.Array:
    """[D, V]: the tied embedding transposed, or the separate head."""
    w = params["embed"].T if config.tie_word_embeddings else params["lm_head"]
    return w.astype(config.compute_dtype)


def logits_from_hidden(config: ModelConfig, params: dict, h: jax.Array) -> jax.Array:
    """[B, T, D] -> float32 logits [B, T, V]."""
    return project(h, lm_head_weight(config, params), jnp.float32)


def forward(config: ModelConfig, params: dict, tokens: jax.Array, positions: jax.Array | None = None,
            mask: jax.Array | None = None) -> jax.Array:
    """tokens [B, T] -> float32 logits [B, T, V]."""
    return logits_from_hidden(config, params, hidden_states(config, params, tokens, positions, mask))
