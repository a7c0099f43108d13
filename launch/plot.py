"""Figures of a run, or of several runs overlaid, from their metrics.jsonl.

    python launch/plot.py --workdir runs/demo                     # -> runs/demo/plots/
    python launch/plot.py --workdir runs/vpd runs/grpo --out cmp  # overlaid -> cmp/

Same as `vpd-plot`. Training draws a run's own figures at every eval and at
the end; this redraws them, or compares runs (the algorithm comparison).
"""

import sys

import _common  # noqa: F401  (import path)

from vpd_jax.cli import plot_main

if __name__ == "__main__":
    sys.exit(plot_main())
