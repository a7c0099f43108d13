"""Generated problem families: thousands of short code problems from templates.

The bundled set (63 hand-written problems) is too small and too hard for a
135M model to learn from on a CPU. This package writes as many problems as a
run wants from 16 train templates (9 stdin, 7 functional) and 4 eval-only
templates, each with surface variation (wording, names, constants, I/O
format), a 1-8 line reference solution, and 2 public + 3 private tests whose
outputs come from running that reference. docs/DATA.md is the data card:
families, counts, difficulty, and what eval holds out.

    problems = generated_problems("train", 4000, seed=0)
    pairs = reference_pairs(problems)            # [(problem, code)] for SFT
    target = sft_target(pairs[0][1])             # the assistant turn to learn

Served to the trainer as task `vpd_generated` (`vpd_jax.data.load_task`),
in memory or through the `vpd_generated` TFDS builder.
"""

from __future__ import annotations

from collections.abc import Sequence

from vpd_jax.data.generated.build import (EVAL_HOLDOUTS, HELDOUT_FAMILIES, SPLITS, TRAIN_FAMILIES,
                                          eval_keys, generated_problems, train_keys)
from vpd_jax.feedback.problems import Problem

FENCE = "`" * 3


def reference_solution(problem: Problem) -> str:
    """The trusted reference program of a generated problem."""
    code = problem.metadata.get("reference_solution")
    if not isinstance(code, str):
        raise ValueError(f"{problem.question_id}: no reference_solution in its metadata; "
                         "only generated problems (task vpd_generated) carry one")
    return code


def reference_pairs(problems: Sequence[Problem]) -> list[tuple[Problem, str]]:
    """(problem, reference code) for each problem: the SFT stage's data."""
    return [(p, reference_solution(p)) for p in problems]


def sft_target(code: str) -> str:
    """The assistant turn a warm start trains on: the program alone, in the
    one fenced python block the grader extracts (vpd_jax/feedback/extract.py)."""
    return f"{FENCE}python\n{code.rstrip()}\n{FENCE}"


__all__ = ["EVAL_HOLDOUTS", "HELDOUT_FAMILIES", "SPLITS", "TRAIN_FAMILIES", "eval_keys", "generated_problems",
           "reference_pairs", "reference_solution", "sft_target", "train_keys"]
