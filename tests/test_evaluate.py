"""pass@k against a brute-force enumeration of k-subsets."""

import itertools
import math

import numpy as np
import pytest

from vpd_jax.evaluate import evaluate, pass_at_k, summarize


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (4, 4, 2), (6, 1, 6), (8, 3, 2)])
def test_pass_at_k_equals_subset_enumeration(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = np.mean([any(samples[i] for i in s) for s in subsets])
    assert math.isclose(pass_at_k(n, c, k), brute, rel_tol=1e-12, abs_tol=1e-12)


def test_pass_at_k_needs_enough_samples():
    with pytest.raises(ValueError, match="at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_evaluate_groups_samples_by_problem():
    class Ex:
        def __init__(self, i):
            self.id = f"p{i}"

    examples = [Ex(i) for i in range(5)]
    calls = []

    def rollout(chunk, n):
        calls.append(len(chunk))
        return [f"{ex.id}:{j}" for ex in chunk for j in range(n)]

    def grade(exs, comps):  # problem i solved by its first i samples
        return [{"passed": int(c.split(":")[1]) < int(e.id[1:]), "verdict": "x"} for e, c in zip(exs, comps)]

    out = evaluate(rollout, grade, examples, num_samples=4, ks=(1, 2), batch_prompts=2)
    assert calls == [2, 2, 1]
    assert out["per_problem_correct"] == {"p0": 0, "p1": 1, "p2": 2, "p3": 3, "p4": 4}
    assert math.isclose(out["pass@1"], np.mean([0, 0.25, 0.5, 0.75, 1.0]))
    assert out["pass@2"] == summarize(np.array([[j < i for j in range(4)] for i in range(5)]), (2,))["pass@2"]


def test_evaluate_records_every_sample_and_partial_credit():
    class Ex:
        def __init__(self, i):
            self.id = f"p{i}"

    examples = [Ex(i) for i in range(3)]

    def rollout(chunk, n):
        return [f"{ex.id}:{j}" for ex in chunk for j in range(n)]

    def grade(exs, comps):  # sample j of any problem passes j of 2 tests
        out = []
        for c in comps:
            j = int(c.split(":")[1])
            out.append({"passed": j == 2, "reward": float(j == 2), "verdict": "accepted" if j == 2 else "wrong_answer",
                        "tests_passed": j, "tests_total": 2, "critique": f"c{j}"})
        return out

    records = []
    out = evaluate(rollout, grade, examples, num_samples=3, batch_prompts=2, records=records)
    assert [(r["id"], r["sample"]) for r in records] == [(f"p{i}", j) for i in range(3) for j in range(3)]
    assert [r["completion"] for r in records] == [f"p{i}:{j}" for i in range(3) for j in range(3)]
    assert all(r["passed"] == (r["sample"] == 2) and r["critique"] == f"c{r['sample']}" for r in records)
    assert math.isclose(out["tests_passed_frac"], np.mean([0, 0.5, 1.0]))
    assert math.isclose(out["pass@1"], 1 / 3)


def test_evaluate_reports_pass_at_1_per_metadata_group():
    class Ex:
        def __init__(self, i, kind):
            self.id, self.metadata = f"p{i}", ({"held_out": kind} if kind else {})

    # p0, p1 combination; p2 template; p3 has no group (left out of both)
    examples = [Ex(0, "combination"), Ex(1, "combination"), Ex(2, "template"), Ex(3, None)]

    def rollout(chunk, n):
        return [f"{ex.id}:{j}" for ex in chunk for j in range(n)]

    def grade(exs, comps):  # problem i solved by its first i samples
        return [{"passed": int(c.split(":")[1]) < int(e.id[1:]), "verdict": "x"} for e, c in zip(exs, comps)]

    out = evaluate(rollout, grade, examples, num_samples=4, batch_prompts=3, group_by="held_out")
    assert math.isclose(out["pass@1/combination"], np.mean([0.0, 0.25]))
    assert math.isclose(out["pass@1/template"], 0.5)
    assert math.isclose(out["pass@1"], np.mean([0, 0.25, 0.5, 0.75]))
    assert not any(k.startswith("pass@1/") for k in evaluate(rollout, grade, examples, 4))  # off by default
    assert not any(k.startswith("pass@1/") for k in evaluate(rollout, grade, examples, 4, group_by="family"))
