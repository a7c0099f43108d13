"""Our params -> a Hugging Face model directory, one tensor at a time.

The inverse of hf_loader.py, driven by the same name table (hf_name_table)
read the other way. What is written:

    config.json                       ModelConfig.to_hf_config()
    model.safetensors                 or, past max_shard_bytes,
    model-0000k-of-0000n.safetensors  + model.safetensors.index.json
    generation_config.json            the source's, else bos / eos / pad
    tokenizer files                   tokenizer.save_pretrained

Streaming: every tensor's HF name, shape and dtype follow from the config,
so each shard's safetensors header is written before any data, and tensors
are then appended one at a time. Only one tensor (one layer of one
parameter kind, or the embedding) is ever on a host at once.

Multi-host: params are global arrays on a mesh. Every process walks the
same tensors in the same order (the gather of a sharded array is a
collective), and shard file k is written by process k % process_count only:
one writer per file, the writes spread over the hosts, which then must share
the output filesystem (NFS, a gcsfuse mount). Without one, spread=False
makes process 0 write everything. Process 0 writes the small files, and
config.json last, after a barrier: with it on disk the directory is complete.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.hf_loader import Layout, hf_name_table
from vpd_jax.models.params import param_shapes

SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16"}
WEIGHTS_NAME, INDEX_NAME = "model.safetensors", "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 2**30  # transformers' long-standing default shard size


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One HF tensor: where it comes from in our params and its HF shape."""

    hf_name: str
    name: str  # our parameter name
    layer: int | None  # index on the stacked layer axis, None for non-layer params
    layout: Layout
    shape: tuple  # HF shape


def tensor_plan(config: ModelConfig) -> list[TensorSpec]:
    """Every HF tensor in file order: embedding, layer by layer, final norm, head."""
    table, shapes = hf_name_table(config), param_shapes(config)

    def spec(name, layer, shape):
        pattern, layout = table[name]
        return TensorSpec(pattern.format(i=layer), name, layer, layout, layout.hf_shape(shape))

    plan = [spec("embed", None, shapes["embed"])]
    for i in range(config.num_layers):
        plan += [spec(name, i, shape[1:]) for name, shape in shapes["layers"].items()]
    plan.append(spec("final_norm", None, shapes["final_norm"]))
    if "lm_head" in shapes:
        plan.append(spec("lm_head", None, shapes["lm_head"]))
    return plan


def plan_shards(plan: list[TensorSpec], itemsize: int, max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Consecutive tensors packed into files of at most max_shard_bytes (a
    tensor larger than that gets a file of its own), as save_pretrained does."""
    shards, size = [[]], 0
    for t in plan:
        n = int(np.prod(t.shape)) * itemsize
        if shards[-1] and size + n > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += n
    return shards


def shard_file_names(n: int) -> list[str]:
    return [WEIGHTS_NAME] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]


class SafetensorsWriter:
    """A safetensors file written header first, then tensors in the declared order.

    The format: an 8-byte little-endian header length, a JSON header giving
    each tensor's dtype, shape and [start, end) byte offsets into the data
    section, then the data. Knowing every shape up front is what lets the
    data be streamed instead of built in memory.
    """

    def __init__(self, path: str, specs: list[TensorSpec], dtype: str):
        self.path, self.specs, self.dtype = path, specs, np.dtype(_numpy_dtype(dtype))
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for t in specs:
            n = int(np.prod(t.shape)) * self.dtype.itemsize
            header[t.hf_name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(t.shape),
                                 "data_offsets": [offset, offset + n]}
            offset += n
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
        self.bytes = 8 + len(blob) + offset
        self._f = open(path, "wb")
        self._f.write(len(blob).to_bytes(8, "little") + blob)
        self._next = 0

    def write(self, spec: TensorSpec, tensor: np.ndarray) -> None:
        want = self.specs[self._next]
        if spec != want or tuple(tensor.shape) != tuple(want.shape):
            raise ValueError(f"{self.path}: expected tensor {want.hf_name} {want.shape} next, "
                             f"got {spec.hf_name} {tuple(tensor.shape)}")
        self._f.write(np.ascontiguousarray(tensor, dtype=self.dtype).tobytes())
        self._next += 1

    def close(self) -> None:
        self._f.close()
        if self._next != len(self.specs):
            raise RuntimeError(f"{self.path}: only {self._next} of {len(self.specs)} tensors were written")
        if os.path.getsize(self.path) != self.bytes:
            raise RuntimeError(f"{self.path}: {os.path.getsize(self.path)} bytes written, header says "
                               f"{self.bytes}")


def _numpy_dtype(dtype: str):
    if dtype not in SAFETENSORS_DTYPES:
        raise ValueError(f"export dtype must be one of {sorted(SAFETENSORS_DTYPES)}, got {dtype!r}")
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.float32


def host_tensor(params: dict, spec: TensorSpec) -> np.ndarray:
    """One tensor in our layout, on this host (a collective on a multi-host mesh)."""
    x = params["layers"][spec.name][spec.layer] if spec.layer is not None else params[spec.name]
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def check_out_dir(out_dir: str) -> None:
    """Refuses a directory that already holds a model: no half-overwritten exports."""
    taken = [f for f in ("config.json", WEIGHTS_NAME, INDEX_NAME) if os.path.exists(os.path.join(out_dir, f))]
    if taken:
        raise FileExistsError(f"{out_dir} already holds a model ({', '.join(taken)}); choose a new output "
                              "directory or delete that one")


def write_hf_model(out_dir: str, config: ModelConfig, params: dict, dtype: str = "float32", tokenizer=None,
                   generation_config: dict | None = None, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
                   spread: bool = True, log=lambda msg: None) -> list[str]:
    """Writes the HF directory; returns the weight file names.

    params: our pytree (numpy or jax arrays, sharded or not). Every process
    must call this with the same arguments. generation_config: a dict for
    generation_config.json (default: the config's bos / eos / pad ids).
    spread: shard files written by all processes in turn (a shared output
    filesystem) rather than all by process 0.
    """
    check_out_dir(out_dir)
    hf_config = config.to_hf_config(dtype)  # before any file: fails on what HF cannot express
    os.makedirs(out_dir, exist_ok=True)
    me, procs = jax.process_index(), jax.process_count() if spread else 1
    shards = plan_shards(tensor_plan(config), np.dtype(_numpy_dtype(dtype)).itemsize, max_shard_bytes)
    names = shard_file_names(len(shards))
    weight_map, total = {}, 0
    for k, (fname, specs) in enumerate(zip(names, shards)):
        writer = SafetensorsWriter(os.path.join(out_dir, fname), specs, dtype) if k % procs == me else None
        for spec in specs:
            tensor = spec.layout.to_hf(host_tensor(params, spec))  # every process: it may be a collective
            if writer is not None:
                writer.write(spec, tensor)
            weight_map[spec.hf_name] = fname
            total += int(np.prod(spec.shape)) * np.dtype(_numpy_dtype(dtype)).itemsize
        if writer is not None:
            writer.close()
            log(f"export: wrote {fname} ({len(specs)} tensors, {writer.bytes / 2**20:.1f} MiB)")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("vpd_jax_hf_export_weights")
    if me == 0:
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
        gen = generation_config or {k: v for k, v in (("bos_token_id", hf_config["bos_token_id"]),
                                                      ("eos_token_id", hf_config["eos_token_id"]),
                                                      ("pad_token_id", hf_config["pad_token_id"]))
                                    if v is not None}
        _write_json(os.path.join(out_dir, "generation_config.json"), gen)
        if len(names) > 1:
            _write_json(os.path.join(out_dir, INDEX_NAME),
                        {"metadata": {"total_size": total}, "weight_map": weight_map})
        _write_json(os.path.join(out_dir, "config.json"), hf_config)  # last: marks the directory complete
    return names


def _write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
