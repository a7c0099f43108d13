"""The parameter pytree: its layout, logical axes and random initialisation.

Layers are stacked on a leading `layers` axis so the forward pass is one
`lax.scan` (one compiled layer body, compile time independent of depth).
Projection weights keep their head structure ([D, H, hd]) so tensor
parallelism shards heads, never a flattened H*hd dimension.

    embed              [V, D]
    layers/attn_norm   [L, D]         (not olmo3)
    layers/q           [L, D, H, hd]
    layers/k, v        [L, D, K, hd]
    layers/o           [L, H, hd, D]
    layers/q_norm      [L, hd]        (qwen3; olmo3: [L, H*hd], one norm over all heads)
    layers/k_norm      [L, hd]        (qwen3; olmo3: [L, K*hd])
    layers/mlp_norm    [L, D]         (not olmo3)
    layers/post_attn_norm, post_mlp_norm  [L, D]  (olmo3, gemma3: norms of the block outputs)
    layers/gate, up    [L, D, F]
    layers/down        [L, F, D]
    final_norm         [D]
    lm_head            [D, V]         (only when embeddings are untied)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vpd_jax.models.config import ModelConfig


def param_shapes(config: ModelConfig) -> dict:
    """Shapes of every parameter, as a pytree of tuples."""
    c = config
    L, D, H, K, hd, F, V = (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
                            c.intermediate_size, c.vocab_size)
    layers = {
        "attn_norm": (L, D), "q": (L, D, H, hd), "k": (L, D, K, hd), "v": (L, D, K, hd),
        "o": (L, H, hd, D), "mlp_norm": (L, D), "gate": (L, D, F), "up": (L, D, F), "down": (L, F, D),
    }
    if c.qk_norm:
        whole = c.qk_norm_all_heads
        layers.update(q_norm=(L, (H if whole else 1) * hd), k_norm=(L, (K if whole else 1) * hd))
    if not c.pre_norms:
        del layers["attn_norm"], layers["mlp_norm"]
    if c.post_norms:
        layers.update(post_attn_norm=(L, D), post_mlp_norm=(L, D))
    shapes = {"embed": (V, D), "layers": layers, "final_norm": (D,)}
    if not c.tie_word_embeddings:
        shapes["lm_head"] = (D, V)
    return shapes


def param_axes(config: ModelConfig) -> dict:
    """Logical axis names of every parameter (see vpd_jax.sharding)."""
    layers = {
        "attn_norm": ("layers", "norm"),
        "q": ("layers", "embed", "heads", "head_dim"),
        "k": ("layers", "embed", "kv_heads", "head_dim"),
        "v": ("layers", "embed", "kv_heads", "head_dim"),
        "o": ("layers", "heads", "head_dim", "embed"),
        "mlp_norm": ("layers", "norm"),
        "gate": ("layers", "embed", "mlp"),
        "up": ("layers", "embed", "mlp"),
        "down": ("layers", "mlp", "embed"),
    }
    if config.qk_norm:
        layers.update(q_norm=("layers", "norm"), k_norm=("layers", "norm"))
    if not config.pre_norms:
        del layers["attn_norm"], layers["mlp_norm"]
    if config.post_norms:
        layers.update(post_attn_norm=("layers", "norm"), post_mlp_norm=("layers", "norm"))
    axes = {"embed": ("vocab", "embed"), "layers": layers, "final_norm": ("norm",)}
    if not config.tie_word_embeddings:
        axes["lm_head"] = ("embed", "vocab")
    return axes


def abstract_params(config: ModelConfig, dtype=None) -> dict:
    """ShapeDtypeStructs of the params (no memory): for restore targets."""
    dt = jnp.dtype(dtype or config.param_dtype)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, dt), param_shapes(config),
                        is_leaf=lambda x: isinstance(x, tuple))


def param_shardings(config: ModelConfig, mesh, rules=None) -> dict:
    from vpd_jax.sharding import tree_shardings

    return tree_shardings(mesh, param_axes(config), abstract_params(config), rules)


def init_params(config: ModelConfig, key: jax.Array, dtype=None) -> dict:
    """Random weights (normal, std 0.02; norms at 1) for tests and toy runs."""
    dt = jnp.dtype(dtype or config.param_dtype)
    shapes = param_shapes(config)
    flat, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    paths = [jax.tree_util.keystr(p) for p, _ in
             jax.tree_util.tree_flatten_with_path(shapes, is_leaf=lambda x: isinstance(x, tuple))[0]]
    keys = jax.random.split(key, len(flat))
    leaves = []
    for path, shape, k in zip(paths, flat, keys):
        if "norm" in path:
            leaves.append(jnp.ones(shape, dt))
        else:
            leaves.append((0.02 * jax.random.normal(k, shape, jnp.float32)).astype(dt))
    return jax.tree.unflatten(treedef, leaves)
