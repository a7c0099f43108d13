"""Putting host tensors onto a mesh, one parameter at a time.

Loaders (safetensors, GGUF) provide a `get(name, layer)` function that
returns one tensor already in vpd_jax's layout (see params.py). This module
checks every shape against the config, stacks the per-layer tensors of ONE
parameter kind, and hands each device only its own shard with
`jax.make_array_from_callback`: the full model never sits on one device, and
on a multi-host pod each host materialises only its addressable shards.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.params import param_axes, param_shapes

Getter = Callable[[str, "int | None"], np.ndarray]


class WeightError(ValueError):
    """A checkpoint does not match what the config expects."""


def _place(host: np.ndarray, dtype, sharding) -> jax.Array:
    host = np.asarray(host)
    if sharding is None:
        return jnp.asarray(host, dtype=dtype)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: np.asarray(host[idx], dtype=dtype))


def assemble_params(config: ModelConfig, get: Getter, source: str, mesh=None, dtype=None, rules=None) -> dict:
    """Builds the params pytree from a per-tensor getter.

    get("q", 3) must return layer 3's q weight as [D, H, hd]; get("embed",
    None) the [V, D] embedding. A missing tensor raises KeyError in the
    getter with its source name; a wrong shape raises WeightError here.
    """
    from vpd_jax.sharding import named_sharding

    dt = jnp.dtype(dtype or config.param_dtype)
    shapes, axes = param_shapes(config), param_axes(config)

    def load(name: str, shape: tuple, logical: tuple, layered: bool) -> jax.Array:
        sharding = named_sharding(mesh, logical, shape, rules) if mesh is not None else None
        if not layered:
            host = get(name, None)
            _check(host, shape, source, name)
        else:
            per_layer = []
            for i in range(config.num_layers):
                t = get(name, i)
                _check(t, shape[1:], source, f"layers.{i}.{name}")
                per_layer.append(np.asarray(t, dtype=np.float32))
            host = np.stack(per_layer)
        return _place(host, dt, sharding)

    params = {"layers": {}}
    for name, shape in shapes["layers"].items():
        params["layers"][name] = load(name, shape, axes["layers"][name], True)
    for name in ("embed", "final_norm", "lm_head"):
        if name in shapes:
            params[name] = load(name, shapes[name], axes[name], False)
    return params


def _check(t: np.ndarray, expected: tuple, source: str, name: str) -> None:
    if tuple(t.shape) != tuple(expected):
        raise WeightError(
            f"{source}: tensor {name!r} has shape {tuple(t.shape)} but the model config expects "
            f"{tuple(expected)} (vpd_jax layout); the config and the weights disagree"
        )
