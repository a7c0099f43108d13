"""The ceiling a decode step cannot beat on this machine: its weight products alone.

    python benchmarks/decode_roofline.py [--preset smollm2-135m] [--batch 16] [--reps 20]

One decode step of a batch of B rows multiplies a [B, D] activation by every
weight matrix of the model once (per layer: q, k, v, o, gate, up, down; then
the LM head). This times exactly those products, as one jitted program per
dtype with nothing else in it (no attention, cache or sampling; one RMS
scale per layer keeps the chain finite), and prints the implied upper bound
on tokens/s, two ways:

- chained: each layer's products read the previous layer's output, as in a
  real decode step, so they run one after another (the bound a sampler
  faces);
- independent: the same products on fixed inputs, free to overlap: the
  throughput of the products alone, an optimistic bound;
- in a loop: the chained step run LOOP_STEPS times inside one
  `lax.fori_loop`, per step, the way the sampler's compiled while loop runs
  it (whether the loop itself costs anything).

`benchmarks/sampler.py` gives what the real sampler reaches; the ratio to
the chained bound is the share left to win outside the products.
bfloat16 rows multiply bfloat16 inputs with float32 accumulation
(`preferred_element_type`), as the sampler's `weights="bfloat16"` does.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import timing  # noqa: E402  (needs the repo root on sys.path)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

LOOP_STEPS = 32


def weight_shapes(config) -> list[tuple[int, int]]:
    """[in, out] of every product one decode step makes, in model order."""
    d, f, hd = config.hidden_size, config.intermediate_size, config.head_dim
    q, kv = config.num_heads * hd, config.num_kv_heads * hd
    layer = [(d, q), (d, kv), (d, kv), (q, d), (d, f), (d, f), (f, d)]
    return layer * config.num_layers + [(d, config.vocab_size)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=20, help="timed calls per dtype; the best is kept")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}", flush=True)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vpd_jax.models import preset

    config = preset(args.preset)
    shapes = weight_shapes(config)
    flops = sum(2 * args.batch * i * o for i, o in shapes)  # per decode step
    print(f"{args.preset}: {len(shapes)} products per decode step, batch {args.batch}: "
          f"{flops / 1e9:.2f} GFLOP per step; jax {jax.__version__} on {jax.default_backend()}")
    rng = np.random.default_rng(0)
    print(f"{'dtype':10} {'products':12} {'ms/step':>8} {'GFLOP/s':>8} {'tokens/s bound':>15}")
    d, per_layer = config.hidden_size, len(shapes[:-1]) // config.num_layers
    for name in args.dtypes.split(","):
        dtype = jnp.dtype(name)
        weights = [jnp.asarray(rng.standard_normal(s, np.float32) / np.sqrt(s[0]), dtype) for s in shapes]
        layers = [weights[i:i + per_layer] for i in range(0, len(weights) - 1, per_layer)]  # in weight_shapes' order
        head = weights[-1]  # [D, V]
        x = jnp.asarray(rng.standard_normal((args.batch, d), np.float32), jnp.float32)  # [B, D]

        mm = lambda a, w: jnp.dot(a.astype(dtype), w, preferred_element_type=jnp.float32)

        @jax.jit
        def chained(layers, head, x):
            keep = jnp.zeros((), jnp.float32)  # k and v feed attention, left out: summed so they run
            for wq, wk, wv, wo, wg, wu, wd in layers:
                q = mm(x, wq)  # [B, H*hd]
                keep += jnp.sum(mm(x, wk)) + jnp.sum(mm(x, wv))
                x = x + mm(q, wo)
                x = x + mm(jax.nn.silu(mm(x, wg)) * mm(x, wu), wd)  # [B, D]
                x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-5)
            return mm(x, head), keep  # [B, V]

        @jax.jit
        def independent(layers, head, x):
            wide = lambda n: jnp.tile(x, (1, -(-n // d)))[:, :n]  # [B, n]: a fixed input of any width
            sums = [jnp.sum(mm(wide(w.shape[0]), w)) for layer in layers for w in layer]
            return mm(x, head), jnp.stack(sums)

        @jax.jit
        def looped(layers, head, x):  # the chained step LOOP_STEPS times in one while loop, as the sampler runs it
            def body(_, carry):
                logits, keep = chained(layers, head, carry[0])
                return carry[0] + 1e-3 * logits[:, :d], carry[1] + keep  # the next step reads this one's logits
            return jax.lax.fori_loop(0, LOOP_STEPS, body, (x, jnp.zeros((), jnp.float32)))

        for label, fn, steps in (("chained", chained, 1), ("independent", independent, 1),
                                 ("in a loop", looped, LOOP_STEPS)):
            best = timing.seconds(lambda: jax.block_until_ready(fn(layers, head, x)),
                                  args.reps if steps == 1 else max(2, args.reps // 8), calls_per_fn=steps)
            print(f"{name:10} {label:12} {1e3 * best:8.1f} {flops / best / 1e9:8.1f} {args.batch / best:15.1f}",
                  flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
