"""Shared start-up of the launch scripts: import path, logging, CPU devices."""

import logging
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # `configs` and `vpd_jax` import from a plain checkout


def setup(cfg) -> None:
    """Logging, and fake CPU devices when a config asks for them (must run
    before JAX initialises its backends)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax", "urllib3", "httpx", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    n = cfg.distributed.local_device_count if "distributed" in cfg else 0
    if n:
        import jax

        jax.config.update("jax_num_cpu_devices", int(n))
