"""Model configuration for the Llama / Qwen3 decoder family.

One frozen, hashable dataclass: it is passed to jitted functions as a static
argument, so every field is a plain Python value (dtypes as strings, rope
scaling as a tuple of pairs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen3ForCausalLM": "qwen3",
    "MistralForCausalLM": "llama",
    "Olmo3ForCausalLM": "olmo3",
    "Gemma3ForCausalLM": "gemma3",
}
MODEL_TYPES = {"llama": "llama", "qwen3": "qwen3", "mistral": "llama", "olmo3": "olmo3", "gemma3_text": "gemma3"}
ARCHS = ("llama", "qwen3", "olmo3", "gemma3")
ACTIVATIONS = ("silu", "gelu_pytorch_tanh")
LAYER_TYPES = ("full_attention", "sliding_attention")
# "freq_factors": per-frequency divisors stored as a tensor (llama.cpp's
# `rope_freqs.weight`, how GGUF files carry llama3 scaling).
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "freq_factors", "yarn")
ATTENTION_IMPLS = ("auto", "xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a decoder-only transformer."""

    # "llama"; "qwen3" (+ per-head q/k RMSNorm); "olmo3" (RMSNorm after attention
    # and MLP instead of before, q/k RMSNorm over all heads at once); "gemma3"
    # (RMSNorm before and after both blocks, per-head q/k RMSNorm, embeddings
    # scaled by sqrt(D); its norms' (1 + w) is stored as the weight itself)
    arch: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 512  # D
    intermediate_size: int = 1376  # F, gated MLP width
    hidden_act: str = "silu"  # the MLP gate: "silu" (SwiGLU) or "gelu_pytorch_tanh" (Gemma's GeGLU)
    num_layers: int = 4  # L
    num_heads: int = 8  # H, query heads
    num_kv_heads: int = 8  # K, key/value heads (GQA when K < H)
    head_dim: int = 64  # may differ from D / H (Qwen3 does)
    query_pre_attn_scalar: float | None = None  # attention scores scaled by its -1/2 power (None: head_dim)
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # ("type", ...), ("factor", ...), ...: hashable form of HF's rope_scaling.
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qk_norm: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    # Sliding-window attention: layer_types[i] is "full_attention" or
    # "sliding_attention" (None: all full); a sliding layer's query at position
    # p sees keys at positions > p - sliding_window, and rotates q/k with
    # local_rope_theta (None: rope_theta) and no rope scaling.
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None
    local_rope_theta: float | None = None
    param_dtype: str = "float32"  # master weights
    compute_dtype: str = "float32"  # matmuls / activations ("bfloat16" on TPU)
    remat: str = "full"  # backward-pass recomputation: "none" | "full" | "save_dots"
    # Training-pass attention kernel: "xla" (einsum + softmax, any backend),
    # "cudnn" (fused flash attention, NVIDIA GPUs, bf16/fp16 compute), or
    # "auto" (cudnn where it applies, else xla). Calls the fused kernel cannot
    # take (left padding, odd lengths) and the sampler use xla.
    attention: str = "auto"

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers or not set(self.layer_types) <= set(LAYER_TYPES):
                raise ValueError(f"ModelConfig.layer_types must list one of {LAYER_TYPES} per layer "
                                 f"({self.num_layers}), got {self.layer_types}")
            if "sliding_attention" in self.layer_types and not self.sliding_window:
                raise ValueError("ModelConfig.layer_types has sliding_attention layers but sliding_window is not set")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"ModelConfig.hidden_act must be one of {ACTIVATIONS}, got {self.hidden_act!r}")
        if self.remat not in ("none", "full", "save_dots"):
            raise ValueError(f"ModelConfig.remat must be 'none', 'full' or 'save_dots', got {self.remat!r}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"ModelConfig.attention must be one of {ATTENTION_IMPLS}, got {self.attention!r}")
        if self.rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(
                f"rope scaling type {self.rope_type!r} is not supported (supported: {SUPPORTED_ROPE_TYPES})"
            )

    @property
    def rope_type(self) -> str:
        return self.rope_dict.get("rope_type", self.rope_dict.get("type", "default"))

    @property
    def rope_dict(self) -> dict:
        return dict(self.rope_scaling or ())

    @property
    def sliding_layers(self) -> tuple[bool, ...]:
        """Per layer: does it attend within the sliding window?"""
        return tuple(t == "sliding_attention" for t in (self.layer_types or ("full_attention",) * self.num_layers))

    def local_rope(self) -> "ModelConfig":
        """The config whose rope the sliding layers use."""
        return self.replace(rope_theta=self.local_rope_theta or self.rope_theta, rope_scaling=None)

    @property
    def pre_norms(self) -> bool:
        """RMSNorm of the attention and MLP inputs (all but OLMo-3)."""
        return self.arch != "olmo3"

    @property
    def post_norms(self) -> bool:
        """RMSNorm of the attention and MLP outputs (OLMo-3, Gemma 3)."""
        return self.arch in ("olmo3", "gemma3")

    @property
    def embed_scale(self) -> float | None:
        """Gemma multiplies the embeddings by sqrt(D) (not the tied LM head)."""
        return self.hidden_size ** 0.5 if self.arch == "gemma3" else None

    @property
    def qk_norm_all_heads(self) -> bool:
        """q/k RMSNorm over all heads at once (OLMo-3), not per head (Qwen3)."""
        return self.arch == "olmo3"

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    # ---------------------------------------------------------------- counts
    def num_params(self, include_embedding: bool = True) -> int:
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        attn = d * hd * (2 * self.num_heads + 2 * self.num_kv_heads)
        qk = hd * (self.num_heads + self.num_kv_heads if self.arch == "olmo3" else 2)
        norms = d * (2 * self.pre_norms + 2 * self.post_norms)
        per_layer = attn + 3 * d * f + norms + (qk if self.qk_norm else 0)
        n = self.num_layers * per_layer + d
        if include_embedding:
            n += self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return n

    def flops_per_token(self, seq_len: int, training: bool = True) -> float:
        """Model FLOPs per token (the MFU convention: matmuls only).

        Forward: 2 x every matmul weight (LM head included, embedding lookup
        excluded) + attention scores and values, 2 x 2 x T x H x hd per layer
        (full T, not causally halved, as PaLM's MFU counts). Training is 3x
        forward (backward = 2x forward); activation recomputation is not
        counted, so MFU stays comparable across remat settings.
        """
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        matmul = self.num_layers * (d * hd * (2 * self.num_heads + 2 * self.num_kv_heads) + 3 * d * f)
        matmul += d * self.vocab_size
        attn = self.num_layers * 4 * seq_len * self.num_heads * hd
        fwd = 2 * matmul + attn
        return float(3 * fwd if training else fwd)

    # ------------------------------------------------------------ HF config
    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any], source: str = "config.json", **overrides) -> "ModelConfig":
        """Builds a config from a transformers `config.json` dict."""
        archs = hf.get("architectures") or []
        arch = None
        for a in archs:
            if a in SUPPORTED_ARCHITECTURES:
                arch = SUPPORTED_ARCHITECTURES[a]
        if arch is None:
            model_type = hf.get("model_type")
            arch = MODEL_TYPES.get(model_type)
        if arch is None:
            raise ValueError(
                f"{source}: unsupported architecture {archs or hf.get('model_type')!r}; "
                f"vpd_jax supports {sorted(SUPPORTED_ARCHITECTURES)} (model_type {' / '.join(MODEL_TYPES)})"
            )
        for flag in ("attention_bias", "mlp_bias"):
            if hf.get(flag):
                raise ValueError(f"{source}: {flag}=true is not supported (Llama/Qwen3 checkpoints have no biases)")
        if hf.get("sliding_window") and hf.get("use_sliding_window"):
            raise ValueError(f"{source}: sliding-window attention is not supported for {arch}")
        act = hf.get("hidden_activation") or hf.get("hidden_act") or "silu"  # Gemma names it hidden_activation
        if act not in ACTIVATIONS:
            raise ValueError(f"{source}: hidden activation {act!r} is not supported (one of {ACTIVATIONS})")
        for flag in ("final_logit_softcapping", "attn_logit_softcapping", "use_bidirectional_attention"):
            if hf.get(flag):
                raise ValueError(f"{source}: {flag}={hf[flag]!r} is not supported")
        heads = hf["num_attention_heads"]
        rope = hf.get("rope_scaling") or None
        local_theta = None
        params = hf.get("rope_parameters")
        if rope is None and isinstance(params, Mapping) and isinstance(params.get("full_attention"), Mapping):
            # per layer type (transformers >= 5, models with sliding layers)
            local = dict(params.get("sliding_attention") or {})
            if local.get("rope_type", "default") != "default":
                raise ValueError(f"{source}: rope scaling of the sliding-window layers ({local}) is not supported")
            local_theta = local.get("rope_theta")
            params = params["full_attention"]
        if rope is None and isinstance(params, Mapping):
            rope = dict(params)  # transformers >= 5 spells it so
        rope_theta = hf.get("rope_theta")
        if rope is not None:
            rope_theta = rope.pop("rope_theta", rope_theta)
            if rope.get("rope_type", rope.get("type", "default")) == "default" and len(rope) <= 1:
                rope = None
        eos = hf.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
        kw = dict(
            arch=arch,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta if rope_theta is not None else 10000.0),
            rope_scaling=tuple(sorted(rope.items())) if rope else None,
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qk_norm=arch != "llama",
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
            pad_token_id=hf.get("pad_token_id"),
        )
        if "MistralForCausalLM" in archs or hf.get("model_type") == "mistral":
            if hf.get("sliding_window"):  # Mistral 7B v0.1: every layer attends within the window
                kw.update(sliding_window=hf["sliding_window"], layer_types=("sliding_attention",) * kw["num_layers"])
        if arch in ("olmo3", "gemma3"):
            kw.update(sliding_window=hf.get("sliding_window"), layer_types=tuple(hf["layer_types"]))
            local_theta = local_theta if local_theta is not None else hf.get("rope_local_base_freq")
            if local_theta is not None and float(local_theta) != kw["rope_theta"]:
                kw["local_rope_theta"] = float(local_theta)
        if arch == "gemma3":
            kw.update(hidden_act=act, query_pre_attn_scalar=hf.get("query_pre_attn_scalar"))
        kw.update(overrides)
        return cls(**kw)

    def to_hf_config(self, dtype: str = "float32") -> dict:
        """The transformers `config.json` of this architecture (export's
        inverse of from_hf_config: from_hf_config(to_hf_config()) == self up
        to the numerics fields). dtype is the stored weights' dtype."""
        if self.rope_type == "freq_factors":
            raise ValueError(
                "this model's rope scaling is a table of per-frequency factors (read from a GGUF "
                "rope_freqs tensor), which a transformers config.json cannot express; export the model "
                "from its Hugging Face checkpoint instead, where the scaling is given by its parameters")
        hf_arch, model_type = {"llama": ("LlamaForCausalLM", "llama"), "qwen3": ("Qwen3ForCausalLM", "qwen3"),
                               "olmo3": ("Olmo3ForCausalLM", "olmo3"),
                               "gemma3": ("Gemma3ForCausalLM", "gemma3_text")}[self.arch]
        eos = list(self.eos_token_ids)
        hf = dict(
            architectures=[hf_arch], model_type=model_type, vocab_size=self.vocab_size,
            hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads, head_dim=self.head_dim, hidden_act=self.hidden_act,
            rms_norm_eps=self.rms_norm_eps, rope_theta=self.rope_theta,
            # the legacy spelling: transformers 4.x reads only it, 5.x converts it
            rope_scaling=self.rope_dict or None, max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings, attention_bias=False,
            bos_token_id=self.bos_token_id, eos_token_id=eos[0] if len(eos) == 1 else (eos or None),
            pad_token_id=self.pad_token_id, torch_dtype=dtype, use_cache=True,
        )
        if self.arch == "llama" and any(self.sliding_layers):
            if not all(self.sliding_layers):
                raise ValueError("a Llama-family model with only some sliding-window layers has no transformers "
                                 "architecture to export to")
            hf.update(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=self.sliding_window)
        elif self.arch == "llama":
            hf["mlp_bias"] = False
        elif self.arch == "qwen3":
            hf.update(use_sliding_window=False, sliding_window=None)
        else:  # olmo3, gemma3
            # Per layer type as well: transformers 5 reads a lone legacy rope_theta
            # into the full layers only (OLMo-3's sliding ones get its 500k default).
            full = {"rope_type": "default", **self.rope_dict, "rope_theta": self.rope_theta}
            local = dict(rope_type="default", rope_theta=self.local_rope().rope_theta)
            hf.update(sliding_window=self.sliding_window, layer_types=list(self.layer_types or ()),
                      rope_parameters={"full_attention": full, "sliding_attention": local})
        if self.arch == "gemma3":
            hf.update(hidden_activation=self.hidden_act, query_pre_attn_scalar=self.query_pre_attn_scalar,
                      rope_local_base_freq=local["rope_theta"], final_logit_softcapping=None,
                      attn_logit_softcapping=None)
        return hf

    @classmethod
    def from_hf_dir(cls, path: str, **overrides) -> "ModelConfig":
        cfg_path = os.path.join(path, "config.json")
        if not os.path.exists(cfg_path):
            raise FileNotFoundError(f"{path}: no config.json; expected a Hugging Face model directory")
        with open(cfg_path) as f:
            return cls.from_hf_config(json.load(f), source=cfg_path, **overrides)

    def to_json(self) -> dict:
        """A JSON dict; the fields OLMo-3 / Gemma 3 added are left out at their
        defaults, so a Llama / Qwen3 config serialises as it did before them
        (checkpoint fingerprints and converted directories of earlier runs
        still match)."""
        d = dataclasses.asdict(self)
        d["rope_scaling"] = dict(self.rope_scaling) if self.rope_scaling else None
        d["eos_token_ids"] = list(self.eos_token_ids)
        d["layer_types"] = list(self.layer_types) if self.layer_types else None
        for f in _LATER_FIELDS:
            if d[f] == _DEFAULTS[f]:
                del d[f]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ModelConfig":
        d = dict(d)
        if d.get("rope_scaling"):  # JSON lists back to tuples: the config must stay hashable
            d["rope_scaling"] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                             for k, v in d["rope_scaling"].items()))
        d["eos_token_ids"] = tuple(d.get("eos_token_ids") or ())
        d["layer_types"] = tuple(d["layer_types"]) if d.get("layer_types") else None
        return cls(**d)


_LATER_FIELDS = ("hidden_act", "query_pre_attn_scalar", "sliding_window", "layer_types", "local_rope_theta")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def _qwen3(**kw) -> ModelConfig:
    base = dict(
        arch="qwen3", vocab_size=151936, head_dim=128, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
        max_position_embeddings=40960, qk_norm=True, bos_token_id=None, eos_token_ids=(151645, 151643),
        pad_token_id=151643,
    )
    base.update(kw)
    return ModelConfig(**base)


def _gemma3(num_layers: int, **kw) -> ModelConfig:
    """Gemma 3 text models: every sixth layer global, the others a 512-token window."""
    layer_types = tuple("full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(num_layers))
    base = dict(
        arch="gemma3", vocab_size=262144, num_heads=4, num_kv_heads=1, head_dim=256, query_pre_attn_scalar=256,
        hidden_act="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=1_000_000.0, local_rope_theta=10_000.0,
        sliding_window=512, layer_types=layer_types, max_position_embeddings=32768, tie_word_embeddings=True,
        qk_norm=True, bos_token_id=2, eos_token_ids=(1, 106), pad_token_id=0, num_layers=num_layers,
    )
    base.update(kw)
    return ModelConfig(**base)


PRESETS = {
    "qwen3-0.6b": lambda: _qwen3(hidden_size=1024, intermediate_size=3072, num_layers=28, num_heads=16,
                                 num_kv_heads=8, tie_word_embeddings=True),
    "qwen3-1.7b": lambda: _qwen3(hidden_size=2048, intermediate_size=6144, num_layers=28, num_heads=16,
                                 num_kv_heads=8, tie_word_embeddings=True),
    "qwen3-4b": lambda: _qwen3(hidden_size=2560, intermediate_size=9728, num_layers=36, num_heads=32,
                               num_kv_heads=8, tie_word_embeddings=True),
    "qwen3-8b": lambda: _qwen3(hidden_size=4096, intermediate_size=12288, num_layers=36, num_heads=32,
                               num_kv_heads=8, tie_word_embeddings=False),
    "smollm2-135m": lambda: ModelConfig(
        arch="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
        num_heads=9, num_kv_heads=3, head_dim=64, rms_norm_eps=1e-5, rope_theta=100000.0,
        max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=1, eos_token_ids=(2,),
        pad_token_id=2),
    "gemma3-270m": lambda: _gemma3(18, hidden_size=640, intermediate_size=2048),
    "gemma3-1b": lambda: _gemma3(26, hidden_size=1152, intermediate_size=6912),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named architecture (random init or a shape check before loading)."""
    key = name.lower()
    if key not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[key]().replace(**overrides)
