"""Where a sampler decode loop's time goes, by XLA operation kind.

    python benchmarks/profile_decode.py [--preset smollm2-135m] [--batch 16] [--prompt 68] [--new 64]
        [--weights float32|bfloat16|int8] [--top 25] [--dump DIR]

Runs `Sampler.generate` once to compile and warm up, once timed, then once
under `jax.profiler.trace`, and sums the trace's per-operation durations of
the whole call (weight conversion and prefill included: at 64+ new tokens
the decode loop dominates) per generated step. Kind names as in
benchmarks/profile_step.py: `ynn_fusion` / `dot` are matmuls, `copy` /
`transpose` fusions move data, `dynamic-update-slice` writes the cache,
`while` / `conditional` are the loop's control. Random weights: speed does
not depend on their values. `--dump DIR` also writes XLA's HLO of every
program, to read which buffers the decode loop copies.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=68)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--weights", default="float32", help="the sampler's weight format: float32, bfloat16 or int8")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--dump", default=None, help="write the decode program's optimized HLO here")
    args = ap.parse_args()
    if args.dump:  # before jax is imported: XLA reads its flags once
        os.environ["XLA_FLAGS"] += f" --xla_dump_to={args.dump} --xla_dump_hlo_as_text"
    import jax
    import numpy as np
    from profile_step import profile_ops  # benchmarks/ is this script's directory

    from vpd_jax.models import init_params, preset
    from vpd_jax.sampling import Sampler, SamplingConfig

    config = preset(args.preset, remat="none")
    params = init_params(config, jax.random.key(0))
    sampler = Sampler(config, SamplingConfig(max_new_tokens=args.new, eos_ids=(), pad_id=0,
                                             weights=args.weights))
    prompt = np.random.default_rng(0).integers(3, config.vocab_size, args.prompt).tolist()
    run = lambda: sampler.generate(params, [prompt], jax.random.key(0), num_samples=args.batch)
    run()  # compile + warm-up
    t = time.perf_counter()
    run()
    wall = time.perf_counter() - t
    by_op, by_kind, op_calls = profile_ops(run)
    calls = collections.Counter()
    for op, n in op_calls.items():
        calls[re.sub(r"\.\d+$", "", op)] += n
    total = sum(by_kind.values())
    steps = args.new - 1
    print(f"# decode, {args.preset}, batch {args.batch}, prompt {args.prompt}, {args.new} new tokens, "
          f"weights {args.weights}, {jax.default_backend()}, load average {os.getloadavg()[0]:.2f}")
    print(f"# generate wall {wall:.2f} s = {args.batch * args.new / wall:.1f} tokens/s (prefill included); "
          f"per decode step below = profiled seconds / {steps}")
    print(f"\n{'kind':48} {'ms/step':>8} {'calls/step':>10} {'share':>6}")
    for kind, sec in by_kind.most_common(args.top):
        print(f"{kind[:48]:48} {1e3 * sec / steps:8.2f} {calls[kind] / steps:10.1f} {sec / total:6.1%}")
    print(f"{'all operations (summed over threads)':48} {1e3 * total / steps:8.2f}")
    print(f"\n{'operation':48} {'ms/step':>8}")
    for op, sec in by_op.most_common(args.top):
        print(f"{op[:48]:48} {1e3 * sec / steps:8.2f}")
    if args.dump:
        print(f"optimized HLO in {args.dump} (*_decode_body*after_optimizations.txt)")


if __name__ == "__main__":
    main()
