"""TFDS builder for the generated problem families (`vpd_jax/data/generated/`).

One config per (num_train, num_eval, seed, eval_holdout): the builder draws the problems
with `generated_problems`, so the array_record files hold exactly what the
in-memory task serves. The config name also carries a fingerprint of the
generator's source, so files built by an older generator are never read
back as if they were current: editing a family makes a new config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import tensorflow_datasets as tfds

from vpd_jax.data import code_records
from vpd_jax.data.builder_base import LocalBuilder
from vpd_jax.data.generated import SPLITS, generated_problems

GENERATOR_DIR = pathlib.Path(__file__).parent / "generated"
DEFAULTS = {"num_train": 4000, "num_eval": 60, "seed": 0, "eval_holdout": "mixed"}


def generator_fingerprint() -> str:
    """A short hash of the generator's source files (and the row writer)."""
    digest = hashlib.sha1()
    for path in sorted(GENERATOR_DIR.glob("*.py")) + [
            pathlib.Path(__file__).parent / "bundled" / "generate.py"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


@dataclasses.dataclass(eq=False)
class GeneratedConfig(tfds.core.BuilderConfig):
    num_train: int = DEFAULTS["num_train"]
    num_eval: int = DEFAULTS["num_eval"]
    seed: int = DEFAULTS["seed"]
    eval_holdout: str = DEFAULTS["eval_holdout"]


def generated_config(num_train: int, num_eval: int, seed: int,
                     eval_holdout: str) -> GeneratedConfig:
    return GeneratedConfig(
        name=(f"train{num_train}_eval{num_eval}_seed{seed}_{eval_holdout}_"
              f"{generator_fingerprint()}"),
        num_train=num_train, num_eval=num_eval, seed=seed, eval_holdout=eval_holdout,
        description=(f"{num_train} train and {num_eval} eval problems ({eval_holdout} "
                     f"hold-out) from seed {seed}"))


class VpdGenerated(LocalBuilder):
    """Short generated code problems (stdin and functional) with tests."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [generated_config(**DEFAULTS)]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, features=code_records.code_features(), description=self.__doc__)

    def _split_generators(self, dl_manager):
        del dl_manager  # generated here, nothing to read
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split):
        config = self.builder_config
        num = config.num_train if split == "train" else config.num_eval
        for problem in generated_problems(split, num, config.seed, config.eval_holdout):
            yield problem.question_id, code_records.problem_to_record(problem)
