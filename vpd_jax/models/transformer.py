"""The decoder: pure functions of (config, params, tokens).

`forward` is the training / scoring pass: it scans one layer body over the
stacked layer axis of the params. The sampler's pass over a KV cache is in
decode.py, on weights converted for decoding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.layers import (apply_rope, attention, causal_flash_attention, gated_mlp, project, rms_norm,
                                   rope_angles)

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


def _norm_if(lp: dict, name: str, x: jax.Array, eps: float) -> jax.Array:
    """RMSNorm with lp[name] where the architecture has that norm, else x:
    the param tree (params.py) says which norms a layer has."""
    return rms_norm(x, lp[name], eps) if name in lp else x


def _qk_norm(config: ModelConfig, x: jax.Array, w: jax.Array) -> jax.Array:
    """Qwen3: RMSNorm per head of x [B, T, N, hd]; OLMo-3: over all N*hd at once."""
    if not config.qk_norm_all_heads:
        return rms_norm(x, w, config.rms_norm_eps)
    return rms_norm(x.reshape(*x.shape[:2], -1), w, config.rms_norm_eps).reshape(x.shape)


def _qkv(config: ModelConfig, lp: dict, x: jax.Array, cos, sin):
    """Normalised input -> rotated q [B, T, H, hd], k and v [B, T, K, hd]."""
    cdt = jnp.dtype(config.compute_dtype)
    h = _norm_if(lp, "attn_norm", x, config.rms_norm_eps)  # pre-norm (not OLMo-3)
    q = jnp.einsum("btd,dhk->bthk", h, lp["q"].astype(cdt))
    k = jnp.einsum("btd,dhk->bthk", h, lp["k"].astype(cdt))
    v = jnp.einsum("btd,dhk->bthk", h, lp["v"].astype(cdt))
    if config.qk_norm:  # RMSNorm of q and k before rotation
        q, k = _qk_norm(config, q, lp["q_norm"]), _qk_norm(config, k, lp["k_norm"])
    q = apply_rope(q, cos, sin)
    if config.query_pre_attn_scalar is not None:  # Gemma: scores / sqrt(scalar); attention divides by sqrt(hd)
        q = q * jnp.asarray((config.head_dim / config.query_pre_attn_scalar) ** 0.5, q.dtype)
    return q, apply_rope(k, cos, sin), v


def _finish_layer(config: ModelConfig, lp: dict, x: jax.Array, attn: jax.Array) -> jax.Array:
    """Attention output projection + residual, then the MLP block + residual
    (OLMo-3 normalises each block's output instead of its input, Gemma 3 both)."""
    cdt, eps = jnp.dtype(config.compute_dtype), config.rms_norm_eps
    x = x + _norm_if(lp, "post_attn_norm", jnp.einsum("bthk,hkd->btd", attn, lp["o"].astype(cdt)), eps)
    h = _norm_if(lp, "mlp_norm", x, eps)
    mlp = gated_mlp(h, lp["gate"].astype(cdt), lp["up"].astype(cdt), lp["down"].astype(cdt), config.hidden_act)
    return x + _norm_if(lp, "post_mlp_norm", mlp, eps)


def _per_layer(config: ModelConfig, q_pos: jax.Array, k_pos: jax.Array, mask: jax.Array):
    """What differs between full and sliding-window layers, as scan inputs.

    q_pos [B, T], k_pos [B, S]: absolute token positions of queries and keys
    (the sampler's cache slots are not positions under left padding, so the
    window is a mask on positions, shared by training, prefill and decode).
    Returns (flags [L] or None, select) where select(flag) -> (mask [B, T, S],
    cos, sin) for that layer.
    """
    cos, sin = rope_angles(config, q_pos)
    if not any(config.sliding_layers):
        return None, lambda flag: (mask, cos, sin)
    window = k_pos[:, None, :] > q_pos[:, :, None] - config.sliding_window  # [B, T, S]
    local_mask = mask & window
    lcos, lsin = rope_angles(config.local_rope(), q_pos)

    def select(flag):
        return (jnp.where(flag, local_mask, mask), jnp.where(flag, lcos, cos), jnp.where(flag, lsin, sin))

    return jnp.asarray(config.sliding_layers), select


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
    x = jnp.take(params["embed"], tokens, axis=0)  # [B, T, D]
    if config.embed_scale is not None:  # in the weights' dtype, as transformers' Gemma does
        x = x * jnp.asarray(config.embed_scale, x.dtype)
    return x.astype(config.compute_dtype)


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
    fused = (attention_impl(config) == "cudnn" and (mask is None or right_padded) and T % 2 == 0
             and not any(config.sliding_layers))
    causal = jnp.tril(jnp.ones((T, T), bool))  # [T, S]
    attn_mask = causal[None] if mask is None else causal[None] & mask.astype(bool)[:, None, :]
    attn_mask = jnp.broadcast_to(attn_mask, (tokens.shape[0], T, T))  # unused (dead code) when fused
    flags, select = _per_layer(config, positions, positions, attn_mask)

    def layer(x, lp_and_flag):
        lp, flag = lp_and_flag
        m, cos, sin = select(flag)
        q, k, v = _qkv(config, lp, x, cos, sin)
        attn = causal_flash_attention(q, k, v) if fused else attention(q, k, v, m)
        return _finish_layer(config, lp, x, attn), None

    if config.remat != "none":
        layer = jax.checkpoint(layer, policy=_REMAT_POLICIES[config.remat], prevent_cse=False)
    x, _ = jax.lax.scan(layer, embed(config, params, tokens), (params["layers"], flags))
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
