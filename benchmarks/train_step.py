"""Throughput of m_step / e_step against the same steps in transformers + PyTorch.

    python benchmarks/train_step.py [--preset smollm2-135m] [--batch 8] [--seq 256]
        [--dtypes float32,bfloat16] [--iters 2] [--remat none] [--topk 20] [--chunk 112]
        [--attention auto] [--peak-tflops auto]

Runs on whatever JAX and PyTorch find: the CPU here, or a GPU (PyTorch on
CUDA when available; JAX through its CUDA plugin).

Each measurement runs in its own subprocess (so peak RSS is that framework's
alone). For every compute dtype both sides time the same three steps on the
same shapes:
  fwd_bwd  a plain next-token NLL forward + backward (no optimizer)
  m_step   teacher forward (no grad) + student forward/backward + reverse KL
           on the student's top-k + tail, clip, AdamW
  e_step   student forward (no grad) + teacher forward/backward + BCO + KL
           on the teacher's top-k + tail, clip, AdamW
JAX runs vpd_jax's jitted steps; PyTorch runs `LlamaForCausalLM` built from
the same shape config with the losses written the direct way (full [B, R, V]
logits). Tokens/s counts the B x T student tokens of a step; the M- and
E-steps also run a second B x T context, so they do ~4/3 of a plain step's
matmul work. Random weights: speed does not depend on their values.

Mixed precision is the same on both sides: float32 master weights and
optimizer state, matmuls in the compute dtype (PyTorch: `torch.autocast`).
On a GPU, float32 matmuls use TF32 on both sides (JAX's default precision;
PyTorch's `allow_tf32` is switched on to match). MFU = model FLOPs
(`ModelConfig.flops_per_token`: the student's forward+backward plus the
other context's forward, remat not counted) / time / peak; the peak is the
dense datasheet rate of the GPU found (or --peak-tflops).
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
sys.path.insert(0, ROOT)
from benchmarks import timing  # noqa: E402  (needs the repo root on sys.path)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, iters: int) -> float:
    """Median seconds of fn() over iters runs (fn blocks until the device is done; warmed up by the caller)."""
    return timing.seconds(fn, iters, reduce="median", warmup=False)


# Dense datasheet peaks in TFLOP/s by (GPU name fragment, compute dtype);
# float32 is the TF32 tensor-core rate both frameworks use on these cards.
PEAK_TFLOPS = {
    ("H100", "bfloat16"): 989.4, ("H100", "float32"): 494.7,
    ("H200", "bfloat16"): 989.4, ("H200", "float32"): 494.7,
    ("A100", "bfloat16"): 312.0, ("A100", "float32"): 156.0,
}


def step_flops(mc, batch: int, seq: int) -> dict:
    """Model FLOPs of one step of each kind (matmuls only, remat not counted)."""
    train, fwd = mc.flops_per_token(seq, training=True), mc.flops_per_token(seq, training=False)
    return {"fwd_bwd": batch * seq * train, "m_step": batch * seq * (train + fwd),
            "e_step": batch * seq * (train + fwd)}


def jax_workload(args):
    """What the JAX side times, at the shape args name: the model config, the
    steps, a packed batch of random rows, random params and the plain
    next-token loss. benchmarks/profile_step.py profiles the same workload."""
    import types

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

    mc = preset(args.preset, compute_dtype=args.dtype, remat=args.remat, attention=args.attention)
    B, T, P = args.batch, args.seq, args.prompt
    R = T - P
    tc = TrainConfig(lr=1e-6, micro_batches=1, logit_chunk=args.chunk, topk=args.topk)
    steps = make_steps(mc, tc, make_mesh(None))
    rng = np.random.default_rng(0)
    tok = lambda n: list(rng.integers(3, mc.vocab_size, n))
    rows = [Row(tok(P), tok(P), tok(R), float(i % 2), i // 4) for i in range(B)]
    batch = pack_rows(rows, row_multiple=steps.row_multiple, pad_to=(T, T, R))

    def nll(p, tokens):  # plain forward + backward, full [B, T, V] logits, as transformers does
        logits = forward(mc, p, tokens)[:, :-1]  # [B, T-1, V]: T tokens in, as transformers' labels= loss
        lp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(lp, tokens[:, 1:, None], axis=-1))

    return types.SimpleNamespace(config=mc, steps=steps, batch=batch, params=init_params(mc, jax.random.key(0)),
                                 nll=nll, tokens=jnp.asarray(batch["student_tokens"]))


def run_jax(args) -> dict:
    import jax

    from vpd_jax.models.transformer import attention_impl

    w = jax_workload(args)
    steps, batch, params, nll, tokens = w.steps, w.batch, w.params, w.nll, w.tokens
    dev = jax.devices()[0]
    out = {"framework": "jax", "dtype": args.dtype, "devices": len(jax.devices()), "remat": args.remat,
           "attention": attention_impl(w.config),
           "device": dev.device_kind if dev.platform != "cpu" else "cpu", "jax": jax.__version__}

    grad = jax.jit(jax.grad(nll))
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
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        out["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
    return out


def run_torch(args) -> dict:
    """The same three computations in transformers + PyTorch: a plain
    forward + backward, and the M-step and E-step written the straightforward
    way (full [B, R, V] logits, torch.topk, AdamW step), as a user would port
    them to a PyTorch trainer."""
    import contextlib

    import torch
    import torch.nn.functional as F
    import transformers

    from vpd_jax.models.config import preset

    mc = preset(args.preset)
    kw = dict(vocab_size=mc.vocab_size, hidden_size=mc.hidden_size, intermediate_size=mc.intermediate_size,
              num_hidden_layers=mc.num_layers, num_attention_heads=mc.num_heads,
              num_key_value_heads=mc.num_kv_heads, head_dim=mc.head_dim, rms_norm_eps=mc.rms_norm_eps,
              rope_theta=mc.rope_theta, tie_word_embeddings=mc.tie_word_embeddings,
              max_position_embeddings=mc.max_position_embeddings)
    config_cls, model_cls = ((transformers.Qwen3Config, transformers.Qwen3ForCausalLM) if mc.arch == "qwen3"
                             else (transformers.LlamaConfig, transformers.LlamaForCausalLM))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True  # JAX's default float32 matmul precision on GPUs
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = model_cls(config_cls(**kw)).to(device)  # float32 master weights, as ours
    model.train()
    autocast = (torch.autocast(device, dtype=getattr(torch, args.dtype)) if args.dtype != "float32"
                else contextlib.nullcontext())
    B, T, P, K = args.batch, args.seq, args.prompt, args.topk
    ids = torch.randint(3, mc.vocab_size, (B, T), device=device)
    t_ids = torch.cat([torch.randint(3, mc.vocab_size, (B, P), device=device), ids[:, P:]], 1)  # other prompt
    targets = ids[:, P:]  # [B, R]
    reward = (torch.arange(B, device=device) % 2).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)

    def response_logits(x):  # [B, R, V] float32, the positions that predict the response
        with autocast:
            logits = model(input_ids=x).logits
        return logits[:, P - 1:-1].float()

    def support(logits, idx):  # top-k + tail log-probs [B, R, K + 1]
        lse = logits.logsumexp(-1, keepdim=True)
        tail = logits.scatter(-1, idx, float("-inf")).logsumexp(-1, keepdim=True) - lse
        return torch.cat([logits.gather(-1, idx) - lse, tail], -1)

    def kl(lp, lq):
        return (lp.exp() * (lp - lq)).sum(-1)

    def step_plain():
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()

    def m_step():  # reverse KL(student || sg teacher) on the student's top-k
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            t = response_logits(t_ids)
        s = response_logits(ids)
        idx = s.detach().topk(K, -1).indices if K else None
        div = kl(support(s, idx), support(t, idx)) if K else kl(F.log_softmax(s, -1), F.log_softmax(t, -1))
        div.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def e_step():  # BCO on the teacher/student log-ratio + KL(teacher || sg student) on the teacher's top-k
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            s = response_logits(ids)
        t = response_logits(t_ids)
        lp_t = F.log_softmax(t, -1).gather(-1, targets[..., None])[..., 0]
        lp_s = F.log_softmax(s, -1).gather(-1, targets[..., None])[..., 0]
        z = 0.1 * (lp_t - lp_s).sum(1)
        bco = -(reward * F.logsigmoid(z)).sum() / reward.sum() - ((1 - reward) * F.logsigmoid(-z)).sum() / (1 - reward).sum()
        idx = t.detach().topk(K, -1).indices if K else None
        klt = kl(support(t, idx), support(s, idx)) if K else kl(F.log_softmax(t, -1), F.log_softmax(s, -1))
        (bco + 0.1 * klt.mean()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def synced(fn):
        def run():
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
        return run

    out = {"framework": "torch", "dtype": args.dtype, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    for name, fn in (("fwd_bwd", step_plain), ("m_step", m_step), ("e_step", e_step)):
        synced(fn)()  # warm-up
        out[f"s_{name}"] = _time(synced(fn), args.iters)
    out["peak_rss_mib"] = _peak_rss_mib()
    if device == "cuda":
        out["device_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _peak(arg: str, device: str, dtype: str) -> float | None:
    """Peak TFLOP/s for MFU: the --peak-tflops number, or the datasheet rate of a known GPU."""
    if arg != "auto":
        return float(arg)
    for (name, dt), tf in PEAK_TFLOPS.items():
        if name in device and dt == dtype:
            return tf
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence (student and teacher)")
    ap.add_argument("--prompt", type=int, default=32, help="prompt tokens; the rest is the scored response")
    ap.add_argument("--chunk", type=int, default=112, help="TrainConfig.logit_chunk")
    ap.add_argument("--topk", type=int, default=20, help="TrainConfig.topk (0 = full-vocabulary divergence)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--remat", default="none", choices=("none", "full", "save_dots"))
    ap.add_argument("--attention", default="auto", choices=("auto", "xla", "cudnn"), help="ModelConfig.attention")
    ap.add_argument("--peak-tflops", default="auto",
                    help="device peak TFLOP/s for MFU: a number, or 'auto' (known GPUs' datasheet rate; none on CPU)")
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
    results = []
    for dtype in args.dtypes.split(","):
        for worker in ("jax",) + (() if args.skip_torch else ("torch",)):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--dtype", dtype] + sys.argv[1:]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"{worker} {dtype} failed:\n{proc.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(json.dumps(r), flush=True)

    tokens = args.batch * args.seq
    from vpd_jax.models.config import preset
    flops = step_flops(preset(args.preset), args.batch, args.seq)
    mem = "device peak MiB" if any("device_peak_mib" in r for r in results) else "peak RSS MiB"
    print(f"\n{'dtype':9} {'what':16} {'s/step':>8} {'tokens/s':>9} {'vs torch same step, fp32':>25} "
          f"{'vs torch same step, same dtype':>31} {'TFLOP/s':>8} {'MFU':>6} {mem:>15}")
    torch_by = {r["dtype"]: r for r in results if r["framework"] == "torch"}
    for r in results:
        peak = _peak(args.peak_tflops, r.get("device", "cpu"), r["dtype"])
        for k in ("s_fwd_bwd", "s_m_step", "s_e_step"):
            s = r[k]
            ratio = lambda base: f"{base[k] / s:.2f}x" if base and k in base else "-"
            tflops = flops[k[2:]] / s / 1e12
            mfu = f"{tflops / peak:.1%}" if peak else "-"
            print(f"{r['dtype']:9} {r['framework'] + ' ' + k[2:]:16} {s:8.3f} {tokens / s:9.1f} "
                  f"{ratio(torch_by.get('float32')):>25} {ratio(torch_by.get(r['dtype'])):>31} "
                  f"{tflops:8.2f} {mfu:>6} {r.get('device_peak_mib', r['peak_rss_mib']):15.0f}")
    if results:
        print(f"# device: {results[0].get('device', 'cpu')}; MFU peak: "
              + ", ".join(f"{d} {_peak(args.peak_tflops, results[0].get('device', 'cpu'), d) or '-'} TFLOP/s"
                          for d in args.dtypes.split(",")))
    load = os.getloadavg()
    print(f"# load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
