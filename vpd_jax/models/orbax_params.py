"""Model directories written by `launch/convert.py`: Orbax params + config + tokenizer.

Reading safetensors or dequantizing GGUF on every host of a pod is slow and
reads the whole file per host; an Orbax checkpoint is restored in parallel,
each host reading only the shards its devices own, straight onto the target
sharding. Layout of such a directory:

    vpd_jax_model.json   {"format": "vpd_jax_model", "version": 1, "config": ModelConfig.to_json()}
    params/              the params pytree (Orbax StandardCheckpointer)
    tokenizer.json, ...  the tokenizer (save_pretrained), so
                         vpd_jax.models.load_tokenizer(dir) works
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.loading import ORBAX_MARKER
from vpd_jax.models.params import abstract_params, param_shardings

FORMAT, VERSION = "vpd_jax_model", 1
PARAMS_DIR = "params"


def save_orbax_params(out_dir: str, config: ModelConfig, params: dict, tokenizer=None) -> str:
    """Writes the directory; refuses to overwrite an existing params checkpoint."""
    import orbax.checkpoint as ocp

    out_dir = os.path.abspath(out_dir)
    target = os.path.join(out_dir, PARAMS_DIR)
    if os.path.exists(target):
        raise FileExistsError(f"{target} already exists; choose a new --out directory or delete it")
    os.makedirs(out_dir, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(target, params)
        ckptr.wait_until_finished()
    if jax.process_index() == 0:  # one writer for the small files; the marker last: with it the dir is complete
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
        with open(os.path.join(out_dir, ORBAX_MARKER), "w") as f:
            json.dump({"format": FORMAT, "version": VERSION, "config": config.to_json()}, f, indent=1)
    return out_dir


def read_model_config(path: str, **overrides) -> ModelConfig:
    marker = os.path.join(path, ORBAX_MARKER)
    if not os.path.exists(marker):
        raise FileNotFoundError(f"{path}: no {ORBAX_MARKER}; not a directory written by launch/convert.py "
                                "(or the conversion did not finish)")
    with open(marker) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{marker}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                         f"expected {FORMAT!r} version {VERSION}")
    return ModelConfig.from_json(meta["config"]).replace(**overrides)


def load_orbax_params(path: str, mesh=None, dtype=None, rules=None, **overrides) -> tuple[ModelConfig, dict]:
    """(config, params), each array restored directly onto its sharding.

    dtype (the parameter dtype; default config.param_dtype) may differ from
    the saved one: Orbax casts while restoring. Shapes are checked against
    the config before anything is read.
    """
    import orbax.checkpoint as ocp

    config = read_model_config(path, **overrides)
    dt = jnp.dtype(dtype or config.param_dtype)
    ckpt = os.path.join(os.path.abspath(path), PARAMS_DIR)
    if not os.path.isdir(ckpt):
        raise FileNotFoundError(f"{path}: the params checkpoint {ckpt} is missing")
    abstract = abstract_params(config, dt)
    if mesh is None:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: one, abstract)
    else:
        shardings = param_shardings(config, mesh, rules)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    with ocp.StandardCheckpointer() as ckptr:
        _check_saved_tree(ckptr.metadata(ckpt), target, ckpt)
        params = ckptr.restore(ckpt, target)
    return config, params


def _check_saved_tree(meta, target: dict, source: str) -> None:
    """Names the first parameter whose saved shape differs from the config's."""
    from vpd_jax.models.placement import WeightError

    saved = getattr(meta, "item_metadata", meta)
    saved = getattr(saved, "tree", saved)
    flat_saved = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(saved)[0]}
    for p, want in jax.tree_util.tree_flatten_with_path(target)[0]:
        key = jax.tree_util.keystr(p)
        if key not in flat_saved:
            raise WeightError(f"{source}: parameter {key} is missing from the checkpoint")
        shape = tuple(getattr(flat_saved[key], "shape", ()))
        if shape != tuple(want.shape):
            raise WeightError(f"{source}: parameter {key} has shape {shape} but the config expects "
                              f"{tuple(want.shape)}")
