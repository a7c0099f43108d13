"""Where a train step's time goes, by XLA operation kind (one profiled step).

    python benchmarks/profile_step.py [--step fwd_bwd|m_step|e_step] [--batch 4] [--seq 256]
        [--preset smollm2-135m] [--top 20]

Compiles the step on benchmarks/train_step.py's workload, runs it once to
warm up, then once under `jax.profiler.trace` and sums the trace's per-operation durations. Kinds
are the operation names without their numeric suffix: on XLA:CPU `ynn_fusion`
is a matmul (YNNPACK), `copy_*`/`transpose_*` fusions move data between
layouts, `wrapped_broadcast` zero-fills buffers (the layer scan's stacked
residuals and weight gradients), `*dynamic-update-slice*` / `dynamic-slice*`
write and read those stacks. The total is the sum over threads, so it can
exceed the wall time. The last table lists the matmuls with their achieved
GFLOP/s, to compare against an isolated matmul of the same shape.

It also prints the page faults and kernel CPU time of the step: XLA
allocates its temporaries per execution, so each step touches fresh pages.
On the CPU the profiler needs XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true,
which this script sets when XLA_FLAGS does not already name it.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import math
import os
import re
import resource
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
if "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()


def build(args):
    """(compiled step, run) for the chosen step on train_step.py's workload:
    run() executes it once and blocks (the M- and E-steps donate their
    state, so run threads the new state into the next call)."""
    import jax

    from train_step import jax_workload  # benchmarks/ is this script's directory

    w = jax_workload(args)
    if args.step == "fwd_bwd":
        compiled = jax.jit(jax.grad(w.nll)).lower(w.params, w.tokens).compile()
        return compiled, lambda: jax.block_until_ready(compiled(w.params, w.tokens))
    fn = w.steps._m if args.step == "m_step" else w.steps._e  # the jitted functions behind m_step / e_step
    state = [w.steps.init_state(w.params)]
    compiled = fn.lower(state[0], w.batch).compile()

    def run():
        state[0], metrics = compiled(state[0], w.batch)
        jax.block_until_ready(metrics)

    return compiled, run


def dot_flops(hlo_text: str) -> dict[str, float]:
    """FLOPs of one call of each matmul fusion, read off the optimized HLO:
    2 x output elements x contracted size (the fused dot's lhs shape)."""
    out = {}
    for m in re.finditer(r"%((?:ynn_fusion|dot)[.\d]*) = f32\[([\d,]*)\][^\n]*?calls=%([\w.\-]+)", hlo_text):
        name, shape, comp = m.groups()
        body = re.search(r"\n%" + re.escape(comp) + r" .*?\n\}", hlo_text, re.S)
        d = body and re.search(r"dot\((%[\w.\-]+), %[\w.\-]+\).*?lhs_contracting_dims=\{([\d,]*)\}", body.group(0))
        lhs = d and re.search(re.escape(d.group(1)) + r" = \w+\[([\d,]*)\]", body.group(0))
        if not lhs:
            continue
        dims = [int(x) for x in lhs.group(1).split(",") if x]
        k = math.prod(dims[int(i)] for i in d.group(2).split(",") if i)
        out[name] = 2.0 * math.prod(int(x) for x in shape.split(",") if x) * k
    return out


def profile_ops(run) -> tuple[collections.Counter, collections.Counter, collections.Counter]:
    """(seconds by operation, seconds by kind, calls by operation) of one
    run() under `jax.profiler.trace`, summed over threads."""
    import jax

    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            run()
        trace = sorted(glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True))
        if not trace:
            sys.exit("the profiler wrote no trace (is XLA_FLAGS overriding --xla_cpu_enable_xprof_traceme?)")
        events = json.load(gzip.open(trace[-1]))
    events = events["traceEvents"] if isinstance(events, dict) else events
    by_op, by_kind, calls = collections.Counter(), collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(("ThunkExecutor", "$", "Slinky", "end:")):
            by_op[e["name"]] += e.get("dur", 0) / 1e6
            calls[e["name"]] += 1  # a scanned layer's op runs once per layer
            by_kind[re.sub(r"\.\d+$", "", e["name"])] += e.get("dur", 0) / 1e6
    return by_op, by_kind, calls


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", default="fwd_bwd", choices=("fwd_bwd", "m_step", "e_step"))
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=112)
    ap.add_argument("--topk", type=int, default=20)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--remat", default="none", choices=("none", "full", "save_dots"))
    ap.add_argument("--attention", default="auto", choices=("auto", "xla", "cudnn"), help="ModelConfig.attention")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    import jax

    compiled, run = build(args)
    run()  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    by_op, by_kind, calls = profile_ops(run)
    total = sum(by_kind.values())
    print(f"# {args.step}, {args.preset}, {args.batch} x {args.seq}, {args.dtype}, remat={args.remat}, "
          f"{jax.default_backend()}, load average {os.getloadavg()[0]:.2f}")
    print(f"# wall {wall:.2f} s (unprofiled run); minor page faults {r1.ru_minflt - r0.ru_minflt}, "
          f"kernel CPU {r1.ru_stime - r0.ru_stime:.2f} s, user CPU {r1.ru_utime - r0.ru_utime:.2f} s")
    print(f"\n{'kind':44} {'seconds':>8} {'share':>6}")
    for kind, sec in by_kind.most_common(args.top):
        print(f"{kind[:44]:44} {sec:8.3f} {sec / total:6.1%}")
    print(f"{'all operations (summed over threads)':44} {total:8.3f}")
    flops = dot_flops(compiled.as_text())
    if flops:
        print(f"\n{'matmul':24} {'calls':>5} {'seconds':>8} {'GFLOP':>8} {'GFLOP/s':>8}")
        for name, sec in sorted(((n, s) for n, s in by_op.items() if n in flops), key=lambda x: -x[1])[:args.top]:
            gf = flops[name] * calls[name] / 1e9
            print(f"{name:24} {calls[name]:5d} {sec:8.3f} {gf:8.2f} {gf / sec:8.1f}")


if __name__ == "__main__":
    main()
