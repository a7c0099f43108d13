"""The Llama / Qwen3 decoder family: config, pure-functional forward, loading."""

from vpd_jax.models.config import ModelConfig, preset
from vpd_jax.models.loading import load_pretrained, load_tokenizer
from vpd_jax.models.params import abstract_params, init_params, param_axes, param_shardings, param_shapes
from vpd_jax.models.decode import cache_bytes, decode_params, forward_cached, init_cache
from vpd_jax.models.transformer import forward, hidden_states, lm_head_weight, logits_from_hidden

__all__ = [
    "ModelConfig", "preset", "load_pretrained", "load_tokenizer", "abstract_params", "init_params", "param_axes",
    "param_shardings", "param_shapes", "cache_bytes", "decode_params", "forward", "forward_cached", "hidden_states",
    "init_cache", "lm_head_weight", "logits_from_hidden",
]
