"""llama.cpp GGUF files: metadata -> ModelConfig, tensors -> our params.

A GGUF file carries the config as `{arch}.*` metadata and the weights as
(possibly quantized) tensors named `blk.N.attn_q.weight` etc. Each tensor is
dequantized on the host when `assemble_params` asks for it, so only one
float32 tensor exists at a time beside the memory-mapped file.

Two conventions of llama.cpp's converter (convert_hf_to_gguf.py) matter:

- For the `llama` architecture it permutes the rows of attn_q / attn_k so
  that llama.cpp's interleaved ("NORM") rope rotates pairs (2i, 2i+1). Our
  decoder uses HF's rotate-half layout, so the permutation is undone here.
  `qwen3` uses NEOX (rotate-half) rope and its converter (Qwen2Model base)
  writes q/k unpermuted, as does transformers' GGUF loader for it.
- llama3 rope scaling is not metadata but a `rope_freqs.weight` tensor of
  per-frequency divisors; it becomes the "freq_factors" rope type.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from vpd_jax.models.config import ModelConfig
from vpd_jax.models.hf_loader import hf_name_table
from vpd_jax.models.placement import WeightError, assemble_params

# GGUF `general.architecture` -> our arch.
GGUF_ARCHITECTURES = {"llama": "llama", "qwen3": "qwen3"}

# Our param name -> GGUF tensor name ({i} = block). Same keys as hf_name_table.
GGUF_NAMES = {
    "embed": "token_embd.weight",
    "final_norm": "output_norm.weight",
    "lm_head": "output.weight",
    "attn_norm": "blk.{i}.attn_norm.weight",
    "q": "blk.{i}.attn_q.weight",
    "k": "blk.{i}.attn_k.weight",
    "v": "blk.{i}.attn_v.weight",
    "o": "blk.{i}.attn_output.weight",
    "q_norm": "blk.{i}.attn_q_norm.weight",
    "k_norm": "blk.{i}.attn_k_norm.weight",
    "mlp_norm": "blk.{i}.ffn_norm.weight",
    "gate": "blk.{i}.ffn_gate.weight",
    "up": "blk.{i}.ffn_up.weight",
    "down": "blk.{i}.ffn_down.weight",
}

# Tensor types we dequantize (all verified in tests/test_gguf.py); anything
# else (K-quants, IQ*) is refused rather than trusted untested.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")

_REQUIRED = object()


class GGUFFile:
    """A memory-mapped GGUF file: metadata values and float32 tensors."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"GGUF file {path!r} does not exist")
        from gguf import GGUFReader

        self.path = path
        try:
            self.reader = GGUFReader(path)
        except Exception as e:  # bad magic, truncated file, ...
            raise ValueError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e
        self.tensors = {t.name: t for t in self.reader.tensors}

    def value(self, key: str, default: Any = _REQUIRED) -> Any:
        field = self.reader.fields.get(key)
        if field is None:
            if default is _REQUIRED:
                raise KeyError(f"{self.path}: metadata key {key!r} is missing")
            return default
        return field.contents()

    def count(self, key: str) -> int | None:
        """Length of an array field without decoding it (the 150k-token list)."""
        field = self.reader.fields.get(key)
        return None if field is None else len(field.data)

    def tensor(self, name: str) -> np.ndarray:
        """Dequantized float32 tensor in numpy (= HF torch) order: [out, in]."""
        from gguf import quants

        t = self.tensors.get(name)
        if t is None:
            raise KeyError(f"{self.path}: tensor {name!r} is missing")
        kind = t.tensor_type.name
        if kind not in SUPPORTED_TYPES:
            raise ValueError(
                f"{self.path}: tensor {name!r} has type {kind}, which vpd_jax does not dequantize "
                f"(supported: {', '.join(SUPPORTED_TYPES)}); requantize the file, e.g. with llama-quantize to Q8_0"
            )
        out = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dims innermost first
        return out.reshape(shape)


@functools.lru_cache(maxsize=1)
def _open_cached(path: str, mtime: float, size: int) -> GGUFFile:
    return GGUFFile(path)


def open_gguf(path: str) -> GGUFFile:
    """GGUFFile, reusing the last one opened: GGUFReader parses every vocabulary
    string into numpy views (seconds for a 50k-150k vocabulary), and a launch
    reads the same file twice, for the params and for the tokenizer."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file {path!r} does not exist")
    st = os.stat(path)
    return _open_cached(os.path.realpath(path), st.st_mtime, st.st_size)


def _f32(x) -> float:
    """A float32 metadata value as the decimal it was written from (1e-05, not
    9.999999747378752e-06), so configs compare equal to the HF ones."""
    return float(str(np.float32(x)))


def config_from_gguf(f: GGUFFile, **overrides) -> ModelConfig:
    """ModelConfig from GGUF metadata (and the tensor list: tied head, rope_freqs)."""
    gguf_arch = f.value("general.architecture")
    arch = GGUF_ARCHITECTURES.get(gguf_arch)
    if arch is None:
        raise ValueError(
            f"{f.path}: unsupported architecture {gguf_arch!r} (metadata general.architecture); "
            f"vpd_jax reads GGUF architectures {sorted(GGUF_ARCHITECTURES)}"
        )
    a = gguf_arch
    D, H = f.value(f"{a}.embedding_length"), f.value(f"{a}.attention.head_count")
    head_dim = f.value(f"{a}.attention.key_length", None) or D // H
    rope_dims = f.value(f"{a}.rope.dimension_count", head_dim)
    if rope_dims != head_dim:
        raise ValueError(f"{f.path}: {a}.rope.dimension_count={rope_dims} != head_dim {head_dim}; "
                         "partial rotary embeddings are not supported")
    vocab = f.count("tokenizer.ggml.tokens") or f.value(f"{a}.vocab_size", None)
    if vocab is None:  # no tokenizer in the file: the embedding's rows
        vocab = int(f.tensors["token_embd.weight"].shape[-1]) if "token_embd.weight" in f.tensors else None
    if vocab is None:
        raise KeyError(f"{f.path}: cannot tell the vocabulary size (no tokenizer.ggml.tokens, "
                       f"{a}.vocab_size or token_embd.weight)")
    eos = [f.value(k, None) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")]
    kw = dict(
        arch=arch,
        vocab_size=int(vocab),
        hidden_size=int(D),
        intermediate_size=int(f.value(f"{a}.feed_forward_length")),
        num_layers=int(f.value(f"{a}.block_count")),
        num_heads=int(H),
        num_kv_heads=int(f.value(f"{a}.attention.head_count_kv", H)),
        head_dim=int(head_dim),
        rms_norm_eps=_f32(f.value(f"{a}.attention.layer_norm_rms_epsilon")),
        rope_theta=_f32(f.value(f"{a}.rope.freq_base", 10000.0)),
        rope_scaling=_rope_scaling(f, a),
        max_position_embeddings=int(f.value(f"{a}.context_length", 2048)),
        tie_word_embeddings="output.weight" not in f.tensors,
        qk_norm=arch == "qwen3",
        bos_token_id=f.value("tokenizer.ggml.bos_token_id", None),
        eos_token_ids=tuple(dict.fromkeys(int(e) for e in eos if e is not None)),
        pad_token_id=f.value("tokenizer.ggml.padding_token_id", None),
    )
    kw.update(overrides)
    return ModelConfig(**kw)


def _rope_scaling(f: GGUFFile, a: str):
    kind = f.value(f"{a}.rope.scaling.type", "none")
    if "rope_freqs.weight" in f.tensors:
        if kind not in ("none", "linear"):
            raise ValueError(f"{f.path}: rope_freqs.weight together with {a}.rope.scaling.type={kind!r} "
                             "is not supported")
        factors = f.tensor("rope_freqs.weight").reshape(-1)
        return (("factors", tuple(float(x) for x in factors)), ("rope_type", "freq_factors"))
    if kind == "linear":
        return (("factor", _f32(f.value(f"{a}.rope.scaling.factor"))), ("rope_type", "linear"))
    if kind != "none":
        raise ValueError(f"{f.path}: {a}.rope.scaling.type={kind!r} is not supported (none, linear, "
                         "or llama3 factors in rope_freqs.weight)")
    return None


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k row permutation: [N*hd, D] -> [N*hd, D].

    The converter reorders each head's rows from (half, i) to (i, half), so
    rotate-half pairs (i, i + hd/2) become adjacent rows (2i, 2i+1) for
    llama.cpp's interleaved rope. Reading rows as (head, i, half) and swapping
    back gives the HF order.
    """
    rows, d = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, d).swapaxes(1, 2).reshape(rows, d)


def load_gguf(path: str, mesh=None, dtype=None, rules=None, **config_overrides) -> tuple[ModelConfig, dict]:
    f = open_gguf(path)
    config = config_from_gguf(f, **config_overrides)
    table = hf_name_table(config)  # layouts between [out, in] and ours
    permuted = {"q": config.num_heads, "k": config.num_kv_heads} if config.arch == "llama" else {}

    def get(name: str, layer: int | None) -> np.ndarray:
        gguf_name = GGUF_NAMES[name].format(i=layer)
        w = f.tensor(gguf_name)
        try:
            if name in permuted:
                w = unpermute_rope_rows(w, permuted[name])
            return table[name][1].to_ours(w)
        except ValueError as e:  # a reshape to heads failed: the config and the tensor disagree
            raise WeightError(f"{path}: tensor {gguf_name!r} of shape {w.shape} does not fit the config "
                              f"(heads {config.num_heads}/{config.num_kv_heads}, head_dim {config.head_dim}): {e}")

    return config, assemble_params(config, get, path, mesh=mesh, dtype=dtype, rules=rules)
