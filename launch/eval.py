"""pass@1 / pass@k of a checkpoint (or of the base model) on the eval split.

    python launch/eval.py --config configs/demo.py --checkpoint_dir runs/demo [--step N]

Same as `vpd-eval`. `--checkpoint_dir` takes a run's workdir or its
checkpoints/ folder. Prints a table and writes
<checkpoint_dir or workdir>/eval_step<N>.json.
"""

import _common  # noqa: F401  (import path)

from vpd_jax.cli import eval_main

if __name__ == "__main__":
    eval_main()
