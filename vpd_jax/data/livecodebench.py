"""TFDS builder for LiveCodeBench code generation, from a local copy.

Users bring the `code_generation_lite` JSONL files (test.jsonl, test2.jsonl,
... test6.jsonl: release k adds file k) and point TFDS's `manual_dir` at
them; nothing is downloaded. Releases are cumulative, so config `vK` reads
the first K files. By default the `test` split holds the problems new in
that release (its newest file) and `train` the older ones, which is a split
by contest date without hard-coding window edges; `test_start_date` switches
to an explicit date cut. Records carry public tests (feedback) and private
tests (reward); `split_feedback_tests` re-cuts them SDPO's way at load time.
"""

from __future__ import annotations

import dataclasses
import random

import tensorflow_datasets as tfds

from vpd_jax.data import code_records
from vpd_jax.data.builder_base import LocalBuilder
from vpd_jax.data.example import DataFormatError, where
from vpd_jax.feedback.problems import Problem, iter_jsonl, parse_problem_row

RELEASE_FILES = {
    f"v{k}": tuple("test.jsonl" if i == 1 else f"test{i}.jsonl"
                   for i in range(1, k + 1))
    for k in range(1, 7)
}


@dataclasses.dataclass(eq=False)
class LiveCodeBenchConfig(tfds.core.BuilderConfig):
    """Which files to read and how to cut them into train and test."""

    files: tuple[str, ...] = ()  # JSONL names under manual_dir, oldest first
    start_date: str = ""  # keep contest_date >= this (ISO); "" = no bound
    end_date: str = ""  # keep contest_date < this; "" = no bound
    # contest_date >= this goes to "test"; "" = the newest file is "test".
    test_start_date: str = ""
    # TFDS reuses files built under the same config name: give a custom
    # window its own name rather than editing the fields of an old one.


def _release_config(name: str) -> LiveCodeBenchConfig:
    files = RELEASE_FILES[name]
    # v1 is a single file: cut it by date so it has a test split too.
    test_start = "2024-01-01" if len(files) == 1 else ""
    return LiveCodeBenchConfig(
        name=name, files=files, test_start_date=test_start,
        description=f"LiveCodeBench release_{name} ({', '.join(files)})")


class Livecodebench(LocalBuilder):
    """LiveCodeBench code generation problems (code_generation_lite)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [_release_config(f"v{k}") for k in range(1, 7)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the JSONL files of LiveCodeBench's code_generation_lite "
        "(test.jsonl ... test6.jsonl) into one folder and pass it as "
        "download_config=tfds.download.DownloadConfig(manual_dir=FOLDER).")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, features=code_records.code_features(),
            description=self.__doc__,
            homepage="https://github.com/LiveCodeBench/LiveCodeBench")

    def _split_generators(self, dl_manager):
        config = self.builder_config
        paths = [dl_manager.manual_dir / name for name in config.files]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"livecodebench/{config.name}: missing {missing}. "
                + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        # Each split streams the files again rather than holding every
        # problem in memory: decoded private tests of a full release run to
        # gigabytes.
        return {"train": self._generate_examples(paths, "train"),
                "test": self._generate_examples(paths, "test")}

    def _generate_examples(self, paths, split):
        config = self.builder_config
        for file_index, path in enumerate(paths):
            newest = file_index == len(paths) - 1
            for key, problem in _read_file(path):
                date = problem.contest_date
                if config.start_date and date < config.start_date:
                    continue
                if config.end_date and date >= config.end_date:
                    continue
                in_test = (date >= config.test_start_date
                           if config.test_start_date else newest)
                if in_test == (split == "test"):
                    yield key, code_records.problem_to_record(problem)


def _read_file(path):
    """(key, Problem) per row; errors name the file, the row and the field."""
    source = str(path)
    for index, row in iter_jsonl(path, DataFormatError):
        problem = parse_problem_row(row, source=source, row_index=index)
        if not problem.contest_date:
            raise DataFormatError(
                f"{where(source, index, 'contest_date')}: missing; LiveCodeBench "
                "splits and windows are chosen by contest date")
        # File name + row: unique even if a question repeats across releases.
        yield f"{path.name}:{index}", problem


def split_feedback_tests(problem: Problem, seed: int = 0) -> Problem:
    """SDPO's cut: half the private tests join the public ones as feedback
    tests, the other half stay private as reward tests: the grader then
    rewards on those alone (metadata reward_tests="private") while the
    critique quotes only feedback tests.

    The halves are chosen by a seeded shuffle of the private tests, keyed by
    the question id, so every host and every run cuts a problem the same way.
    """
    private = list(problem.private_tests)
    random.Random(f"{seed}:{problem.question_id}").shuffle(private)
    half = len(private) // 2
    return dataclasses.replace(
        problem, public_tests=list(problem.public_tests) + private[:half],
        private_tests=private[half:], metadata=dict(problem.metadata, reward_tests="private"))
