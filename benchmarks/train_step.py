"""Throughput of m_step / e_step against transformers' forward + backward.

    python benchmarks/train_step.py [--preset smollm2-135m] [--batch 8] [--seq 256]
        [--dtypes float32,bfloat16] [--iters 2] [--remat none]

Each measurement runs in its own subprocess (so peak RSS is that framework's
alone): for every compute dtype, JAX times m_step, e_step and a plain
next-token NLL forward + backward on the same model, and PyTorch times
`LlamaForCausalLM(input_ids, labels=input_ids).loss.backward()` built from
the same shape config. Tokens/s counts the B x T student tokens of a step
(the M- and E-steps also run a teacher forward over a second B x T context,
so they do ~4/3 of a plain step's matmul work). Random weights: speed does
not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, iters: int) -> float:
    """Mean seconds of fn() over iters runs (fn blocks until done)."""
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vpd_jax.models.config import preset
    from vpd_jax.models.params import init_params
    from vpd_jax.models.transformer import forward
    from vpd_jax.packing import Row, pack_rows
    from vpd_jax.sharding import make_mesh
    from vpd_jax.steps import make_steps
    from vpd_jax.train_config import TrainConfig

    mc = preset(args.preset, compute_dtype=args.dtype, remat=args.remat)
    mesh = make_mesh(None)
    B, T, P = args.batch, args.seq, args.prompt
    R = T - P
    tc = TrainConfig(lr=1e-6, micro_batches=1, logit_chunk=args.chunk, topk=20)
    steps = make_steps(mc, tc, mesh)
    rng = np.random.default_rng(0)
    tok = lambda n: list(rng.integers(3, mc.vocab_size, n))
    rows = [Row(tok(P), tok(P), tok(R), float(i % 2), i // 4) for i in range(B)]
    batch = pack_rows(rows, row_multiple=steps.row_multiple, pad_to=(T, T, R))
    params = init_params(mc, jax.random.key(0))
    out = {"framework": "jax", "dtype": args.dtype, "devices": len(jax.devices()), "remat": args.remat}

    def nll(p, tokens):  # plain forward + backward, full [B, T, V] logits, as transformers does
        logits = forward(mc, p, tokens[:, :-1])  # [B, T-1, V]
        lp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(lp, tokens[:, 1:, None], axis=-1))

    grad = jax.jit(jax.grad(nll))
    tokens = jnp.asarray(batch["student_tokens"])
    t0 = time.perf_counter()
    compiled = grad.lower(params, tokens).compile()
    out["compile_s_fwd_bwd"] = time.perf_counter() - t0
    out["temp_mib_fwd_bwd"] = compiled.memory_analysis().temp_size_in_bytes / 2**20
    jax.block_until_ready(compiled(params, tokens))
    out["s_fwd_bwd"] = _time(lambda: jax.block_until_ready(compiled(params, tokens)), args.iters)

    state = steps.init_state(params)
    for name in ("m_step", "e_step"):
        fn = getattr(steps, "_" + name[0])  # the jitted function behind steps.m_step / e_step
        t0 = time.perf_counter()
        c = fn.lower(state, batch).compile()
        out[f"compile_s_{name}"] = time.perf_counter() - t0
        out[f"temp_mib_{name}"] = c.memory_analysis().temp_size_in_bytes / 2**20
        state, m = c(state, batch)  # warm-up run
        jax.block_until_ready(m)

        def run():
            nonlocal state
            state, m = c(state, batch)
            jax.block_until_ready(m)

        out[f"s_{name}"] = _time(run, args.iters)
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def run_torch(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from vpd_jax.models.config import preset

    mc = preset(args.preset)
    cfg = LlamaConfig(vocab_size=mc.vocab_size, hidden_size=mc.hidden_size, intermediate_size=mc.intermediate_size,
                      num_hidden_layers=mc.num_layers, num_attention_heads=mc.num_heads,
                      num_key_value_heads=mc.num_kv_heads, head_dim=mc.head_dim, rms_norm_eps=mc.rms_norm_eps,
                      rope_theta=mc.rope_theta, tie_word_embeddings=mc.tie_word_embeddings,
                      max_position_embeddings=mc.max_position_embeddings)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(getattr(torch, args.dtype))
    model.train()
    ids = torch.randint(3, mc.vocab_size, (args.batch, args.seq))

    def step():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    step()  # warm-up
    s = _time(step, args.iters)
    return {"framework": "torch", "dtype": args.dtype, "threads": torch.get_num_threads(), "s_fwd_bwd": s,
            "peak_rss_mib": _peak_rss_mib()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence (student and teacher)")
    ap.add_argument("--prompt", type=int, default=32, help="prompt tokens; the rest is the scored response")
    ap.add_argument("--chunk", type=int, default=112, help="TrainConfig.logit_chunk")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--remat", default="none", choices=("none", "full", "save_dots"))
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_jax(args) if args.worker == "jax" else run_torch(args)))
        return

    load = os.getloadavg()
    print(f"# {args.preset}, {args.batch} x {args.seq} tokens, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = []
    for dtype in args.dtypes.split(","):
        for worker in ("jax",) + (() if args.skip_torch else ("torch",)):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--dtype", dtype] + sys.argv[1:]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode:
                print(f"{worker} {dtype} failed:\n{proc.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(json.dumps(r), flush=True)

    tokens = args.batch * args.seq
    print(f"\n{'dtype':9} {'what':22} {'s/step':>8} {'tokens/s':>9} {'vs torch fp32':>13} {'vs torch same':>13} "
          f"{'peak RSS MiB':>12}")
    torch_s = {r["dtype"]: r["s_fwd_bwd"] for r in results if r["framework"] == "torch"}
    base = torch_s.get("float32")
    for r in results:
        keys = ("s_fwd_bwd",) if r["framework"] == "torch" else ("s_fwd_bwd", "s_m_step", "s_e_step")
        for k in keys:
            s = r[k]
            what = f"{r['framework']} {k[2:]}"
            same = torch_s.get(r["dtype"])
            ratio = lambda b: f"{b / s:13.2f}" if b else f"{'-':>13}"
            print(f"{r['dtype']:9} {what:22} {s:8.2f} {tokens / s:9.1f} {ratio(base)} {ratio(same)} "
                  f"{r['peak_rss_mib']:12.0f}")
    load = os.getloadavg()
    print(f"# load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
