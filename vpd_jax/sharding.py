"""Device mesh and the one table of logical-axis rules.

Code elsewhere names array dimensions by *logical* axis (`batch`, `embed`,
`heads`, ...). This module alone maps them to the physical mesh axes
(`data`, `fsdp`, `tensor`), so changing the parallelism of a run is a config
edit, never a code edit.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),  # rows of a batch: pure data parallelism + FSDP
    ("seq", None),
    ("embed", "fsdp"),  # weights' model dimension sharded over FSDP (ZeRO-3)
    ("vocab", "tensor"),
    ("heads", "tensor"),  # Megatron-style tensor parallel attention
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("layers", None),  # the stacked layer axis that lax.scan walks
    ("norm", None),
    ("cache_seq", None),
)


def make_mesh(shape: Mapping[str, int] | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh; one size may be -1 (= what remains).

    `shape=None` puts every device on `fsdp`, the right default from one CPU
    to a pod slice for models that fit with ZeRO-3 sharding alone.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = dict(shape or {"data": 1, "fsdp": -1, "tensor": 1})
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh axes {sorted(unknown)} are unknown; use {MESH_AXES}")
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh {shape}: at most one axis may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {shape}: {len(devices)} devices are not divisible by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but {len(devices)} are "
            "available; set one axis to -1 to infer it"
        )
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(sizes, devices=devices)  # topology-aware on TPU
    except Exception:  # CPU / odd device counts: plain row-major order is fine
        grid = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(grid, MESH_AXES)


def _rules(rules) -> dict:
    return dict(DEFAULT_RULES if rules is None else rules)


def logical_spec(logical_axes: Sequence[str | None], mesh: Mesh | None = None,
                 shape: Sequence[int] | None = None, rules=None) -> PartitionSpec:
    """PartitionSpec for logical axes; a dimension the mesh axes do not divide
    evenly is replicated instead (e.g. 3 KV heads on tensor=2)."""
    table = _rules(rules)
    spec, used = [], set()
    for i, name in enumerate(logical_axes):
        target = table.get(name) if name is not None else None
        if name is not None and name not in table:
            raise KeyError(f"logical axis {name!r} has no sharding rule; known: {sorted(table)}")
        if target is not None:
            axes = (target,) if isinstance(target, str) else tuple(target)
            axes = tuple(a for a in axes if a not in used)  # a mesh axis shards one dim only
            if mesh is not None:
                axes = tuple(a for a in axes if mesh.shape[a] > 1)
                if shape is not None and axes and shape[i] % math.prod(mesh.shape[a] for a in axes):
                    log.debug("replicating dim %d (%s, size %d) over %s", i, name, shape[i], axes)
                    axes = ()
            used.update(axes)
            target = None if not axes else (axes[0] if len(axes) == 1 else axes)
        spec.append(target)
    return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, logical_axes: Sequence[str | None], shape: Sequence[int] | None = None,
                   rules=None) -> NamedSharding:
    return NamedSharding(mesh, logical_spec(logical_axes, mesh, shape, rules))


def tree_shardings(mesh: Mesh, axes_tree, shapes_tree, rules=None):
    """NamedShardings for a pytree, given matching trees of logical axes and
    shapes (anything with `.shape`)."""
    is_axes = lambda x: isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)
    return jax.tree.map(lambda axes, s: named_sharding(mesh, axes, tuple(s.shape), rules),
                        axes_tree, shapes_tree, is_leaf=is_axes)


def batch_sharding(mesh: Mesh, ndim: int = 2, rules=None) -> NamedSharding:
    """Rows over (data, fsdp), every other dimension replicated."""
    return named_sharding(mesh, ("batch",) + (None,) * (ndim - 1), None, rules)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh, rules=None) -> int:
    """How many shards the batch axis has: batch sizes must be multiples."""
    spec = logical_spec(("batch",), mesh, None, rules)[0]
    if spec is None:
        return 1
    axes = (spec,) if isinstance(spec, str) else spec
    return math.prod(mesh.shape[a] for a in axes)
