"""TFDS builder for the bundled problem set (`vpd_jax/data/bundled/`).

The rows ship in the repository, so building needs no manual_dir and no
network; the builder exists so that the bundled set travels the same
array_record / `tfds.data_source` path as LiveCodeBench on a pod. For quick
local use, `vpd_jax.data.bundled.bundled_problems` reads the JSONL directly.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from vpd_jax.data import bundled, code_records
from vpd_jax.data.builder_base import LocalBuilder


class VpdProblems(LocalBuilder):
    """Small original code problems (stdin and functional) with tests."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, features=code_records.code_features(),
            description=self.__doc__)

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is in the repository
        return {split: self._generate_examples(split) for split in bundled.SPLITS}

    def _generate_examples(self, split):
        for problem in bundled.bundled_problems(split):
            yield problem.question_id, code_records.problem_to_record(problem)
