"""The sampler's pass: the decoder over a KV cache, from weights laid out for decoding.

Training wants the layers stacked ([L, ...]) so one `lax.scan` compiles one
layer body; decoding a few rows at a time does not. A decode step is a
handful of [B, D] x [D, N] products per layer, and inside a scan every
layer's weights are first dynamic-sliced out of the stack: a copy of all
weights per generated token, as large as the matmuls' own reads (profiled
in docs/PERFORMANCE.md). So the sampler converts the trainer's params once
per `generate` call (`decode_params`) into one entry per layer, optionally
in bfloat16 or int8 (weight-only, per-output-channel scales), and runs the
layers as a Python loop. The KV cache is one [B, K, S, hd] buffer per layer
and per k / v, the layout the score and value products read without a
transpose, updated in place under donation.

The maths is `transformer.forward`'s (same blocks from layers.py); only the
weights' layout and, when asked, their precision differ.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.layers import MASK_VALUE, apply_rope, rms_norm, rope_angles

WEIGHT_FORMATS = ("compute", "float32", "bfloat16", "int8")


# ------------------------------------------------------------------ weights
def _quantize(w: jax.Array, out_axis: int) -> dict:
    """Symmetric int8 with one float32 scale per output channel (the largest
    |w| of that channel maps to 127): round-to-nearest, so each weight is off
    by at most scale / 2."""
    w32 = w.astype(jnp.float32)
    reduce = tuple(a for a in range(w.ndim) if a != out_axis % w.ndim)
    scale = jnp.max(jnp.abs(w32), axis=reduce) / 127.0
    scale = jnp.where(scale > 0, scale, 1.0)  # an all-zero channel stays zero
    q = jnp.round(w32 / jnp.expand_dims(scale, reduce)).astype(jnp.int8)
    return {"int8": q, "scale": scale}


def _convert(w: jax.Array, fmt: str, out_axis: int = -1):
    if fmt == "int8":
        return _quantize(w, out_axis)
    return w.astype(fmt)


def decode_params(config: ModelConfig, params: dict, weights: str = "compute") -> dict:
    """The trainer's stacked params -> the sampler's per-layer weights.

        embed        [V, D]        the lookup table, and the LM head when tied
        lm_head      [D, V]        untied models only
        layers[l]    q [D, H*hd], k / v [D, K*hd], o [H*hd, D], gate / up [D, F], down [F, D],
                     attn_norm / mlp_norm [D] (q_norm / k_norm [hd]) kept in float32
        final_norm   [D]

    weights: "compute" (config.compute_dtype, the trainer's numerics),
    "float32", "bfloat16", or "int8" (a dict {"int8", "scale"} per matrix).
    Meant to run under jit, once per generate call: the result lives only
    for that call, so it is never a second copy on disk or between steps.
    """
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"sampler weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
    fmt = config.compute_dtype if weights == "compute" else weights
    c = config
    stacked = params["layers"]
    flat = {  # [L, in, out] views of the projection weights
        "q": stacked["q"].reshape(c.num_layers, c.hidden_size, -1),
        "k": stacked["k"].reshape(c.num_layers, c.hidden_size, -1),
        "v": stacked["v"].reshape(c.num_layers, c.hidden_size, -1),
        "o": stacked["o"].reshape(c.num_layers, -1, c.hidden_size),
        "gate": stacked["gate"], "up": stacked["up"], "down": stacked["down"],
    }
    norms = [n for n in ("attn_norm", "mlp_norm", "q_norm", "k_norm") if n in stacked]
    layers = []
    for i in range(c.num_layers):
        layer = {name: _convert(w[i], fmt) for name, w in flat.items()}
        layer.update({n: stacked[n][i].astype(jnp.float32) for n in norms})
        layers.append(layer)
    out = {"embed": _convert(params["embed"], fmt, out_axis=0), "layers": layers,
           "final_norm": params["final_norm"].astype(jnp.float32)}
    if not c.tie_word_embeddings:
        out["lm_head"] = _convert(params["lm_head"], fmt)
    return out


def matmul(x: jax.Array, w, out_dtype=None) -> jax.Array:
    """x [..., I] @ w [I, O] for any weight format. int8 weights are widened
    inside the product (XLA fuses the convert into the matmul's operand
    read, so only int8 bytes cross the memory bus) and the per-channel scale
    is applied to the [..., O] result; bfloat16 weights likewise."""
    out_dtype = out_dtype or x.dtype
    if isinstance(w, dict):
        y = jnp.einsum("...i,io->...o", x, w["int8"].astype(x.dtype), preferred_element_type=jnp.float32)
        return (y * w["scale"]).astype(out_dtype)
    return jnp.einsum("...i,io->...o", x, w.astype(x.dtype), preferred_element_type=out_dtype)


def embed_rows(config: ModelConfig, dparams: dict, tokens: jax.Array) -> jax.Array:
    """tokens [B, T] -> [B, T, D] in the compute dtype."""
    table = dparams["embed"]
    cdt = jnp.dtype(config.compute_dtype)
    if isinstance(table, dict):
        return (jnp.take(table["int8"], tokens, axis=0).astype(cdt) * jnp.take(table["scale"], tokens)[..., None])
    return jnp.take(table, tokens, axis=0).astype(cdt)


def decode_logits(config: ModelConfig, dparams: dict, h: jax.Array) -> jax.Array:
    """Final-normed hidden states [B, T, D] -> float32 logits [B, T, V]."""
    if not config.tie_word_embeddings:
        return matmul(h, dparams["lm_head"], jnp.float32)
    table = dparams["embed"]  # [V, D]: contract on D, no transposed copy
    if isinstance(table, dict):
        y = jnp.einsum("btd,vd->btv", h, table["int8"].astype(h.dtype), preferred_element_type=jnp.float32)
        return y * table["scale"]
    return jnp.einsum("btd,vd->btv", h, table.astype(h.dtype), preferred_element_type=jnp.float32)


# -------------------------------------------------------------------- cache
def init_cache(config: ModelConfig, batch: int, max_len: int, dtype=None) -> list:
    """Zeroed cache: per layer {"k", "v"} of [B, K, S, hd] in the compute dtype."""
    shape = (batch, config.num_kv_heads, max_len, config.head_dim)
    dt = jnp.dtype(dtype or config.compute_dtype)
    return [{"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt)} for _ in range(config.num_layers)]


def cache_bytes(config: ModelConfig, batch: int, max_len: int, dtype=None) -> int:
    """Bytes of the KV cache for this batch and length (both k and v)."""
    itemsize = jnp.dtype(dtype or config.compute_dtype).itemsize
    return 2 * config.num_layers * batch * max_len * config.num_kv_heads * config.head_dim * itemsize


def _cached_attention(q: jax.Array, ck: jax.Array, cv: jax.Array, mask: jax.Array) -> jax.Array:
    """q [B, T, H, hd] against the cache ck, cv [B, K, S, hd] -> [B, T, H*hd].

    Query head h reads KV head h // G (transformers' repeat_kv); the G heads
    of a group and the T queries share one [G*T, hd] x [hd, S] product.
    Softmax in float32, masked slots at MASK_VALUE as in layers.attention.
    """
    B, T, H, hd = q.shape
    K = ck.shape[1]
    G = H // K
    qg = q.reshape(B, T, K, G, hd).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, hd)
    scores = jnp.einsum("bkqd,bksd->bkqs", qg, ck, preferred_element_type=jnp.float32) * (hd ** -0.5)
    m = jnp.broadcast_to(mask[:, None, None], (B, 1, G, T, mask.shape[-1])).reshape(B, 1, G * T, -1)
    scores = jnp.where(m, scores, MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(cv.dtype)
    out = jnp.einsum("bkqs,bksd->bkqd", probs, cv)  # [B, K, G*T, hd]
    return out.reshape(B, K, G, T, hd).transpose(0, 3, 1, 2, 4).reshape(B, T, H * hd)


def forward_cached(config: ModelConfig, dparams: dict, tokens: jax.Array, positions: jax.Array, cache: list,
                   cache_index: jax.Array, kv_valid: jax.Array, last_only: bool = False) -> tuple[jax.Array, list]:
    """Runs tokens [B, T] written at cache slots [cache_index, cache_index + T).

    dparams from `decode_params`; cache from `init_cache`. kv_valid [B, S]
    marks the cache slots holding real tokens (including the ones written
    now); a query at slot i attends to valid slots <= i. Returns float32
    logits ([B, 1, V] when last_only) and the new cache.
    """
    c = config
    B, T = tokens.shape
    S = cache[0]["k"].shape[2]
    slot = cache_index + jnp.arange(T)  # [T]
    mask = kv_valid.astype(bool)[:, None, :] & (jnp.arange(S)[None, None, :] <= slot[None, :, None])  # [B, T, S]
    cos, sin = rope_angles(c, positions)
    idx = jnp.asarray(cache_index, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    x = embed_rows(c, dparams, tokens)  # [B, T, D]
    new_cache = []
    for lp, layer_cache in zip(dparams["layers"], cache):
        h = rms_norm(x, lp["attn_norm"], c.rms_norm_eps)
        q = matmul(h, lp["q"]).reshape(B, T, c.num_heads, c.head_dim)
        k = matmul(h, lp["k"]).reshape(B, T, c.num_kv_heads, c.head_dim)
        v = matmul(h, lp["v"]).reshape(B, T, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            q, k = rms_norm(q, lp["q_norm"], c.rms_norm_eps), rms_norm(k, lp["k_norm"], c.rms_norm_eps)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        ck, cv = layer_cache["k"], layer_cache["v"]
        ck = jax.lax.dynamic_update_slice(ck, k.transpose(0, 2, 1, 3).astype(ck.dtype), (zero, zero, idx, zero))
        cv = jax.lax.dynamic_update_slice(cv, v.transpose(0, 2, 1, 3).astype(cv.dtype), (zero, zero, idx, zero))
        new_cache.append({"k": ck, "v": cv})
        x = x + matmul(_cached_attention(q, ck.astype(q.dtype), cv.astype(q.dtype), mask), lp["o"])
        h = rms_norm(x, lp["mlp_norm"], c.rms_norm_eps)
        x = x + matmul(jax.nn.silu(matmul(h, lp["gate"])) * matmul(h, lp["up"]), lp["down"])
    if last_only:
        x = x[:, -1:]
    return decode_logits(c, dparams, rms_norm(x, dparams["final_norm"], c.rms_norm_eps)), new_cache
