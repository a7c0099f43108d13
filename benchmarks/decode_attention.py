"""What a decode step's attention costs next to its weight products.

    python benchmarks/decode_attention.py [--preset smollm2-135m] [--batch 16] [--slots 256,512] [--reps 10]

`decode_roofline.py` times the weight products of a decode step; the
sampler runs at ~58% of that bound. This times the other large part of the
step: one query token per row against every layer's KV cache, with the
sampler's own `_cached_attention` (the [B, K, S, hd] layout, GQA grouping,
float32 softmax), chained over the layers as decode runs them, for each
cache length S in --slots. The sampler's cache is prompt bucket +
max_new_tokens slots and every step reads all of them (future slots are
masked, not skipped), so the 16 x 128 benchmark shape reads S = 256.

It also times reading only the first W of S slots through a static slice
(`ck[:, :, :W]`), the obvious way to skip not-yet-written slots: on
XLA:CPU the slice is strided, so it is copied first, and the step gets
slower, not faster (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import timing  # noqa: E402  (needs the repo root on sys.path)
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--slots", default="256,512", help="cache lengths S to time")
    ap.add_argument("--reps", type=int, default=10, help="timed calls per row; the best is kept")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}", flush=True)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vpd_jax.models import preset
    from vpd_jax.models.decode import _cached_attention

    c = preset(args.preset)
    B, K, H, hd, L = args.batch, c.num_kv_heads, c.num_heads, c.head_dim, c.num_layers
    print(f"{args.preset}: {L} layers, {H} query / {K} KV heads of {hd}, batch {B}; "
          f"jax {jax.__version__} on {jax.default_backend()}")
    rng = np.random.default_rng(0)

    def best(fn):  # ms per call, best of --reps after a compiling call
        return 1e3 * timing.seconds(lambda: jax.block_until_ready(fn()), args.reps)

    def program(read: int):
        @jax.jit
        def attend(q, ck, cv):  # q [B, 1, H, hd]; ck, cv: L x [B, K, S, hd]
            for k, v in zip(ck, cv):
                k, v = k[:, :, :read], v[:, :, :read]  # a no-op when read == S
                mask = jnp.ones((B, 1, read), bool)
                out = _cached_attention(q, k, v, mask)  # [B, 1, H*hd]
                q = q + 1e-3 * out.reshape(q.shape)  # chained: the next layer waits for this one
            return q
        return attend

    print(f"{'cache slots S':>13} {'slots read':>10} {'ms/step':>8} {'cache MB read':>14} {'GB/s':>6}")
    for S in (int(s) for s in args.slots.split(",")):
        ck = [jnp.asarray(rng.standard_normal((B, K, S, hd), np.float32)) for _ in range(L)]
        cv = [jnp.asarray(rng.standard_normal((B, K, S, hd), np.float32)) for _ in range(L)]
        q = jnp.asarray(rng.standard_normal((B, 1, H, hd), np.float32))
        for read in sorted({S, max(S // 2, 1)}, reverse=True):  # all slots, then a slice of half
            attend = program(read)
            ms = best(lambda: attend(q, ck, cv))
            mb = 2 * L * B * K * read * hd * 4 / 1e6
            label = f"{read}" + (" (slice)" if read < S else "")
            print(f"{S:>13} {label:>10} {ms:8.1f} {mb:14.0f} {mb / ms:6.1f}", flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
