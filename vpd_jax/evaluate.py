"""pass@k on an eval split: sample n completions per problem, grade, estimate.

pass@k uses the unbiased estimator of LiveCodeBench / Codex:
1 - C(n - c, k) / C(n, k) per problem, averaged over problems.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from vpd_jax.metrics import Progress


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples (from n with c correct) passes."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def summarize(correct: np.ndarray, ks: Sequence[int]) -> dict:
    """correct [P, n] booleans -> {"pass@k": mean over problems}."""
    correct = np.asarray(correct, bool)
    n = correct.shape[1]
    out = {}
    for k in ks:
        if k <= n:
            out[f"pass@{k}"] = float(np.mean([pass_at_k(n, int(c), k) for c in correct.sum(1)]))
    return out


def tests_passed_fraction(grade: dict) -> float | None:
    """Partial credit of one graded code sample: tests passed / tests run
    (None for a grade without test counts, e.g. multiple choice)."""
    if "tests_total" not in grade:
        return None
    return grade["tests_passed"] / max(grade["tests_total"], 1)


def grouped_pass_at_1(correct: np.ndarray, examples: Sequence, key: str) -> dict:
    """pass@1 per value of metadata[key] (e.g. held_out: combination vs
    template), as {"pass@1/<value>": mean}: a mean over a mixed eval split
    can hide that one kind of problem rises while another falls. Examples
    without the key are left out; {} when none has it."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        value = (getattr(ex, "metadata", None) or {}).get(key)
        if value is not None:
            groups.setdefault(str(value), []).append(i)
    correct = np.asarray(correct, bool)  # [P, n]
    return {f"pass@1/{v}": float(correct[idx].mean()) for v, idx in sorted(groups.items())}


def evaluate(rollout_fn, grade_fn, examples: Sequence, num_samples: int, ks: Sequence[int] = (1,),
             batch_prompts: int = 8, records: list | None = None, progress: str | None = None,
             group_by: str = "") -> dict:
    """Samples `num_samples` completions per example and grades them.

    rollout_fn(examples, num_samples) -> list of completions (prompt-major);
    grade_fn(examples_repeated, completions) -> list of dicts with "passed".
    Returns pass@k, per-verdict counts and per-problem correct counts. When
    `records` is a list, one dict per graded sample (id, sample index,
    completion, verdict, passed, critique) is appended to it, so a user can
    read why the model fails, not only how often. `progress` names a
    progress display (metrics.Progress) of the samples graded so far.
    `group_by` names a metadata key: pass@1 is also reported per value of
    it (`grouped_pass_at_1`).
    """
    correct = np.zeros((len(examples), num_samples), bool)
    verdicts: dict[str, int] = {}
    fractions = []  # tests passed / tests run, per graded code sample
    shown = Progress(progress, len(examples) * num_samples) if progress else None
    for start in range(0, len(examples), batch_prompts):
        chunk = list(examples[start:start + batch_prompts])
        completions = rollout_fn(chunk, num_samples)
        repeated = [ex for ex in chunk for _ in range(num_samples)]
        grades = grade_fn(repeated, completions)
        for j, g in enumerate(grades):
            correct[start + j // num_samples, j % num_samples] = bool(g["passed"])
            verdicts[g.get("verdict", "?")] = verdicts.get(g.get("verdict", "?"), 0) + 1
            if (frac := tests_passed_fraction(g)) is not None:
                fractions.append(frac)
            if records is not None:
                records.append({"id": repeated[j].id, "sample": j % num_samples, "passed": bool(g["passed"]),
                                "reward": float(g.get("reward", float(bool(g["passed"])))),
                                "verdict": g.get("verdict", "?"), "completion": completions[j],
                                "critique": g.get("critique", "")})
        if shown is not None:
            shown.update(len(grades))
    if shown is not None:
        shown.close()
    out = summarize(correct, ks)
    if group_by:
        out.update(grouped_pass_at_1(correct, examples, group_by))
    if fractions:  # partial credit: moves before pass@1 does on a weak model
        out["tests_passed_frac"] = float(np.mean(fractions))
    out["num_problems"] = len(examples)
    out["num_samples"] = num_samples
    out["verdicts"] = verdicts
    out["per_problem_correct"] = {ex.id: int(c) for ex, c in zip(examples, correct.sum(1))}
    return out
