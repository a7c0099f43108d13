"""pass@1 / pass@k of a checkpoint (or of the base model) on the eval split.

    python launch/eval.py --config configs/demo.py --checkpoint_dir runs/demo [--step N]

Prints a table and writes <checkpoint_dir or workdir>/eval_step<N>.json.
"""

import _common  # noqa: F401  (import path)
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/*.py file", lock_config=True)
_CKPT = flags.DEFINE_string("checkpoint_dir", "", "a run's workdir (holding checkpoints/); empty = base model")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_OUT = flags.DEFINE_string("out", "", "JSON output path (default: in checkpoint_dir or workdir)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    cfg = _CONFIG.value
    _common.setup(cfg)
    from vpd_jax.trainer import run_eval

    run_eval(cfg, checkpoint_dir=_CKPT.value, step=_STEP.value, out=_OUT.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
