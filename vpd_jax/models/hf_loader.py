"""Hugging Face checkpoints: config.json + safetensors (single or sharded).

The name mapping is one table: our parameter -> (HF tensor name, Layout
between HF's [out, in] torch layout and our [in, heads, head_dim] layout);
export (hf_export.py) reads the same table the other way.
Tensors are read one at a time with safetensors' lazy reader.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.placement import assemble_params


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one tensor's Hugging Face (torch [out, in]) layout maps to ours, both ways.

    kind "same" (norms, the embedding), "transpose" ([out, in] <-> [in, out]),
    "heads_in" (q/k/v: [N*hd, D] <-> [D, N, hd]), "heads_out" (o:
    [D, H*hd] <-> [H, hd, D]) or "plus_one" (Gemma's norms scale by 1 + w;
    we keep 1 + w as the weight, so one RMSNorm serves every family). Loading (to_ours) and export (to_hf) read the
    same table entry, so the two directions cannot drift apart.
    """

    kind: str
    heads: int = 0
    head_dim: int = 0

    def to_ours(self, w: np.ndarray) -> np.ndarray:
        if self.kind == "same":
            return w
        if self.kind == "plus_one":
            return w.astype(np.float32) + 1.0
        if self.kind == "transpose":
            return w.T
        if self.kind == "heads_in":  # [N*hd, D] -> [D, N, hd]
            return w.T.reshape(w.shape[1], self.heads, self.head_dim)
        return w.T.reshape(self.heads, self.head_dim, -1)  # heads_out: [D, H*hd] -> [H, hd, D]

    def to_hf(self, w: np.ndarray) -> np.ndarray:
        if self.kind == "same":
            return w
        if self.kind == "plus_one":
            return w.astype(np.float32) - 1.0
        if self.kind == "transpose":
            return w.T
        if self.kind == "heads_in":  # [D, N, hd] -> [N*hd, D]
            return w.reshape(w.shape[0], -1).T
        return w.reshape(-1, w.shape[-1]).T  # heads_out: [H, hd, D] -> [D, H*hd]

    def hf_shape(self, shape: tuple) -> tuple:
        """The HF shape of a tensor whose shape in our layout is `shape`."""
        if self.kind in ("same", "plus_one"):
            return tuple(shape)
        if self.kind == "transpose":
            return tuple(reversed(shape))
        if self.kind == "heads_in":
            return (shape[1] * shape[2], shape[0])
        return (shape[2], shape[0] * shape[1])


def hf_name_table(config: ModelConfig) -> dict:
    """our name -> (HF name pattern with {i} for the layer, Layout)."""
    c = config
    same, t = Layout("same"), Layout("transpose")
    norm = Layout("plus_one") if c.arch == "gemma3" else same
    # the pre-MLP norm: Llama calls it post_attention_layernorm, which in
    # OLMo-3 and Gemma 3 is the norm of the attention output
    mlp_norm = "pre_feedforward_layernorm" if c.arch == "gemma3" else "post_attention_layernorm"
    table = {
        "embed": ("model.embed_tokens.weight", same),
        "final_norm": ("model.norm.weight", norm),
        "lm_head": ("lm_head.weight", t),
        "attn_norm": ("model.layers.{i}.input_layernorm.weight", norm),
        "q": ("model.layers.{i}.self_attn.q_proj.weight", Layout("heads_in", c.num_heads, c.head_dim)),
        "k": ("model.layers.{i}.self_attn.k_proj.weight", Layout("heads_in", c.num_kv_heads, c.head_dim)),
        "v": ("model.layers.{i}.self_attn.v_proj.weight", Layout("heads_in", c.num_kv_heads, c.head_dim)),
        "o": ("model.layers.{i}.self_attn.o_proj.weight", Layout("heads_out", c.num_heads, c.head_dim)),
        "q_norm": ("model.layers.{i}.self_attn.q_norm.weight", norm),
        "k_norm": ("model.layers.{i}.self_attn.k_norm.weight", norm),
        "mlp_norm": (f"model.layers.{{i}}.{mlp_norm}.weight", norm),
        "post_attn_norm": ("model.layers.{i}.post_attention_layernorm.weight", norm),
        "post_mlp_norm": ("model.layers.{i}.post_feedforward_layernorm.weight", norm),
        "gate": ("model.layers.{i}.mlp.gate_proj.weight", t),
        "up": ("model.layers.{i}.mlp.up_proj.weight", t),
        "down": ("model.layers.{i}.mlp.down_proj.weight", t),
    }
    return table


class _SafetensorsIndex:
    """Maps tensor name -> file for one or many safetensors shards."""

    def __init__(self, path: str):
        from safetensors import safe_open

        self._open = safe_open
        index_path = os.path.join(path, "model.safetensors.index.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.exists(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            self.files = {name: os.path.join(path, fn) for name, fn in weight_map.items()}
            self.source = index_path
        elif os.path.exists(single):
            with safe_open(single, framework="numpy") as f:
                self.files = {name: single for name in f.keys()}
            self.source = single
        else:
            raise FileNotFoundError(
                f"{path}: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints "
                "are not supported: convert them with transformers' save_pretrained(safe_serialization=True))"
            )
        self._handles = {}

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def get(self, name: str) -> np.ndarray:
        if name not in self.files:
            raise KeyError(f"{self.source}: tensor {name!r} is missing")
        fn = self.files[name]
        if fn not in self._handles:
            if not os.path.exists(fn):
                raise FileNotFoundError(f"{self.source}: shard {fn} (holding {name!r}) does not exist")
            self._handles[fn] = self._open(fn, framework="numpy")
        t = self._handles[fn].get_tensor(name)
        return t.astype(np.float32) if t.dtype != np.float32 else t


def _read_bf16_safe(index: _SafetensorsIndex, name: str) -> np.ndarray:
    """safetensors' numpy backend cannot read bfloat16: read raw bytes then."""
    try:
        return index.get(name)
    except (TypeError, ValueError) as e:
        if "bf16" not in str(e).lower() and "bfloat16" not in str(e).lower():
            raise
        import ml_dtypes

        fn = index.files[name]
        with open(fn, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            meta = header[name]
            start, end = meta["data_offsets"]
            f.seek(8 + n + start)
            raw = f.read(end - start)
        return np.frombuffer(raw, dtype=ml_dtypes.bfloat16).reshape(meta["shape"]).astype(np.float32)


def load_hf(path: str, mesh=None, dtype=None, rules=None, **config_overrides) -> tuple[ModelConfig, dict]:
    config = ModelConfig.from_hf_dir(path, **config_overrides)
    index = _SafetensorsIndex(path)
    table = hf_name_table(config)

    def get(name, layer):
        pattern, layout = table[name]
        return layout.to_ours(_read_bf16_safe(index, pattern.format(i=layer)))

    return config, assemble_params(config, get, index.source, mesh=mesh, dtype=dtype, rules=rules)
