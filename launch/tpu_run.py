"""Train with VPD (or the SDPO / GRPO baselines).

    python launch/tpu_run.py --config configs/demo.py [--config.key=value ...]

Same as `vpd-train`; `--config` also takes a preset name (demo, tiny, lcb,
sciknoweval). On a Cloud TPU pod every host runs this same command (gcloud
... ssh --worker=all); jax.distributed is initialised from the TPU metadata.
Runs resume from the latest checkpoint in config.workdir.
"""

import _common  # noqa: F401  (import path)

from vpd_jax.cli import train_main

if __name__ == "__main__":
    train_main()
