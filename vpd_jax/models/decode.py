"""The sampler's pass: the decoder over a KV cache, from weights laid out for decoding.

Training wants the layers stacked ([L, ...]) so one `lax.scan` compiles one
layer body; decoding a few rows at a time does not. A decode step is a
handful of [B, D] x [D, N] products per layer, and inside a scan every
layer's weights are first dynamic-sliced out of the stack: a copy of all
weights per generated token, as large as the matmuls' own reads (profiled
in docs/PERFORMANCE.md). So the sampler converts the trainer's params once
per `generate` call (`decode_params`) into one entry per layer, optionally
in bfloat16 or int8 (weight-only, grouped scales), and runs the
layers as a Python loop. The KV cache is one [B, K, S, hd] buffer per layer
and per k / v, the layout the score and value products read without a
transpose, updated in place under donation.

The maths is `transformer.forward`'s (same blocks from layers.py, the same
per-family pieces: which norms a layer has, q/k norm per head or over all
heads, Gemma's embedding and query scales, GeGLU, and the sliding-window
mask and local rope of `transformer._per_layer`); only the weights' layout
and, when asked, their precision differ.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.layers import MASK_VALUE, apply_rope, rms_norm
from vpd_jax.models.transformer import _norm_if, _per_layer, _qk_norm

WEIGHT_FORMATS = ("compute", "float32", "bfloat16", "int8")


# ------------------------------------------------------------------ weights
INT8_GROUP = 32  # input rows sharing one int8 scale


def _quantize(w: jax.Array) -> dict:
    """w [I, O] -> symmetric int8 [I, O] with one float32 scale per group of
    INT8_GROUP input rows and per output column ([I / g, O]): the largest |w|
    of a group maps to 127, round-to-nearest, so each weight is off by at
    most scale / 2. Groups along the contraction, as GGUF's block formats
    do: an outlier then coarsens 32 weights, not a whole column (per-column
    scales gave SmolLM2 ~2.5x the log-prob error)."""
    I, O = w.shape
    g = INT8_GROUP if I % INT8_GROUP == 0 else I  # odd widths fall back to one group per column
    blocks = w.astype(jnp.float32).reshape(I // g, g, O)
    scale = jnp.max(jnp.abs(blocks), axis=1) / 127.0  # [I / g, O]
    scale = jnp.where(scale > 0, scale, 1.0)  # an all-zero group stays zero
    q = jnp.round(blocks / scale[:, None, :]).astype(jnp.int8).reshape(I, O)
    return {"int8": q, "scale": scale}


def _convert(w: jax.Array, fmt: str):
    if fmt == "int8":
        return _quantize(w)
    return w.astype(fmt)


def decode_params(config: ModelConfig, params: dict, weights: str = "compute") -> dict:
    """The trainer's stacked params -> the sampler's per-layer weights.

        embed        [V, D]        the lookup table, and the LM head when tied
        lm_head      [D, V]        untied models only
        layers[l]    q [D, H*hd], k / v [D, K*hd], o [H*hd, D], gate / up [D, F], down [F, D],
                     the layer's norms (attn / mlp / post_attn / post_mlp [D], q / k) kept in float32
        final_norm   [D]

    weights: "compute" (config.compute_dtype, the trainer's numerics),
    "float32", "bfloat16", or "int8" (a dict {"int8", "scale"} per layer
    matrix; the vocabulary matrices then in bfloat16).
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
    norms = [n for n in stacked if n.endswith("norm")]  # which norms depend on the family (params.py)
    layers = []
    for i in range(c.num_layers):
        layer = {name: _convert(w[i], fmt) for name, w in flat.items()}
        layer.update({n: stacked[n][i].astype(jnp.float32) for n in norms})
        layers.append(layer)
    # int8 keeps the vocabulary matrices in bfloat16: grouped scales along D
    # would make the LM head a [B, D / g, V] product, and they hold 20% of
    # the weights of a small model only.
    vocab_fmt = "bfloat16" if fmt == "int8" else fmt
    out = {"embed": params["embed"].astype(vocab_fmt), "layers": layers,
           "final_norm": params["final_norm"].astype(jnp.float32)}
    if not c.tie_word_embeddings:
        out["lm_head"] = params["lm_head"].astype(vocab_fmt)
    return out


def decode_weight_bytes(config: ModelConfig, weights: str = "compute") -> int:
    """Bytes of `decode_params`' result: the copy a generate call adds."""
    c = config
    vocab = c.vocab_size * c.hidden_size * (1 if c.tie_word_embeddings else 2)
    layers = c.num_params(include_embedding=False) - c.hidden_size
    if weights == "int8":
        return int(layers * (1 + 4 / INT8_GROUP) + vocab * 2)
    fmt = c.compute_dtype if weights == "compute" else weights
    return (layers + vocab) * jnp.dtype(fmt).itemsize


def matmul(x: jax.Array, w, out_dtype=None, spec: str = "...i,io->...o") -> jax.Array:
    """x [..., I] @ w [I, O] (or as spec says) for any weight format.

    bfloat16 weights multiply bfloat16-rounded activations, accumulating in
    float32: the one product this CPU runs natively (AMX), 3x a float32
    one; a widened weight would be read as float32 and gain nothing. int8
    weights are dequantized per group inside the program (the convert and
    scale fuse into the matmul's operand read) and multiply in the compute
    dtype: a memory saving, not a speed-up, on XLA:CPU.
    """
    out_dtype = out_dtype or x.dtype
    if isinstance(w, dict):
        G, O = w["scale"].shape
        w = (w["int8"].reshape(G, -1, O).astype(x.dtype) * w["scale"][:, None, :].astype(x.dtype)).reshape(-1, O)
    elif jnp.dtype(w.dtype).itemsize < jnp.dtype(x.dtype).itemsize:
        x = x.astype(w.dtype)
    return jnp.einsum(spec, x, w.astype(x.dtype), preferred_element_type=jnp.float32).astype(out_dtype)


def embed_rows(config: ModelConfig, dparams: dict, tokens: jax.Array) -> jax.Array:
    """tokens [B, T] -> [B, T, D] in the compute dtype (Gemma: times sqrt(D))."""
    x = jnp.take(dparams["embed"], tokens, axis=0)
    if config.embed_scale is not None:
        x = x * jnp.asarray(config.embed_scale, x.dtype)
    return x.astype(config.compute_dtype)


def decode_logits(config: ModelConfig, dparams: dict, h: jax.Array) -> jax.Array:
    """Final-normed hidden states [B, T, D] -> float32 logits [B, T, V]."""
    if not config.tie_word_embeddings:
        return matmul(h, dparams["lm_head"], jnp.float32)
    return matmul(h, dparams["embed"], jnp.float32, spec="btd,vd->btv")  # [V, D]: contract on D, no transposed copy


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
    # A key's position is the count of valid slots before it (left padding is
    # no position), so kv_valid must mark every slot that holds a token.
    k_pos = jnp.cumsum(kv_valid.astype(jnp.int32), axis=1) - 1  # [B, S]
    flags, select = _per_layer(c, positions, k_pos, mask)
    act = jax.nn.silu if c.hidden_act == "silu" else (lambda g: jax.nn.gelu(g, approximate=True))
    idx = jnp.asarray(cache_index, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    x = embed_rows(c, dparams, tokens)  # [B, T, D]
    new_cache = []
    for i, (lp, layer_cache) in enumerate(zip(dparams["layers"], cache)):
        m, cos, sin = select(c.sliding_layers[i] if flags is not None else None)
        h = _norm_if(lp, "attn_norm", x, c.rms_norm_eps)
        q = matmul(h, lp["q"]).reshape(B, T, c.num_heads, c.head_dim)
        k = matmul(h, lp["k"]).reshape(B, T, c.num_kv_heads, c.head_dim)
        v = matmul(h, lp["v"]).reshape(B, T, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            q, k = _qk_norm(c, q, lp["q_norm"]), _qk_norm(c, k, lp["k_norm"])
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if c.query_pre_attn_scalar is not None:  # Gemma's score scale, as transformer._qkv applies it
            q = q * jnp.asarray((c.head_dim / c.query_pre_attn_scalar) ** 0.5, q.dtype)
        ck, cv = layer_cache["k"], layer_cache["v"]
        ck = jax.lax.dynamic_update_slice(ck, k.transpose(0, 2, 1, 3).astype(ck.dtype), (zero, zero, idx, zero))
        cv = jax.lax.dynamic_update_slice(cv, v.transpose(0, 2, 1, 3).astype(cv.dtype), (zero, zero, idx, zero))
        new_cache.append({"k": ck, "v": cv})
        attn = matmul(_cached_attention(q, ck.astype(q.dtype), cv.astype(q.dtype), m), lp["o"])
        x = x + _norm_if(lp, "post_attn_norm", attn, c.rms_norm_eps)
        h = _norm_if(lp, "mlp_norm", x, c.rms_norm_eps)
        mlp = matmul(act(matmul(h, lp["gate"])) * matmul(h, lp["up"]), lp["down"])
        x = x + _norm_if(lp, "post_mlp_norm", mlp, c.rms_norm_eps)
    if last_only:
        x = x[:, -1:]
    return decode_logits(c, dparams, rms_norm(x, dparams["final_norm"], c.rms_norm_eps)), new_cache
