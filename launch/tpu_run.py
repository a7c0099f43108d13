"""Train with VPD (or the SDPO / GRPO baselines).

    python launch/tpu_run.py --config configs/demo.py [--config.key=value ...]

On a Cloud TPU pod every host runs this same command (gcloud ... ssh
--worker=all); jax.distributed is initialised from the TPU metadata. Runs
resume from the latest checkpoint in config.workdir.
"""

import _common  # noqa: F401  (import path)
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/*.py file", lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; settings go in --config.key=value")
    cfg = _CONFIG.value
    _common.setup(cfg)
    from vpd_jax.trainer import run_training

    run_training(cfg)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
