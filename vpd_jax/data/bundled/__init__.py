"""The problem set we ship: 63 original LiveCodeBench-format problems.

Loadable with no download and no TFDS build, which is what the CPU demo and
most tests want; the `vpd_problems` TFDS builder serves the same rows as
array_record. The JSONL files are generated from the Python specs in this
folder (`python -m vpd_jax.data.bundled.generate`) and committed.
"""

from __future__ import annotations

import json
import pathlib

from vpd_jax.feedback.problems import Problem, load_problems

BUNDLED_DIR = pathlib.Path(__file__).parent
SPLITS = ("train", "eval")


def problems_path(split: str) -> pathlib.Path:
    if split not in SPLITS:
        raise ValueError(f"bundled split {split!r} not in {SPLITS}")
    return BUNDLED_DIR / f"{split}.jsonl"


def bundled_problems(split: str) -> list[Problem]:
    """The bundled problems of `split` ("train" or "eval"), in file order."""
    return load_problems(problems_path(split))


def solutions_path() -> pathlib.Path:
    return BUNDLED_DIR / "solutions.jsonl"


def reference_solutions() -> dict[str, str]:
    """question_id -> reference solution code (both splits)."""
    with open(solutions_path(), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {row["question_id"]: row["code"] for row in rows}
