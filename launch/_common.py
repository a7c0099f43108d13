"""Shared start-up of the launch scripts: run from a plain checkout.

The scripts are thin: each calls the same `vpd_jax.cli` function as its
console script (`vpd-train`, ...). This only puts the checkout first on the
import path, so `python launch/X.py` runs the checkout's code, installed or
not.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from vpd_jax.cli import setup  # noqa: E402,F401  (logging + fake CPU devices, for scripts that call it)
