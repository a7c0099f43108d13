"""The bundled problem set: its shape, its files, and its reference solutions
graded by the feedback server (LiveCodeBench rules, sandboxed)."""

import collections
import json

import pytest

from vpd_jax.data import bundled, reference_solutions
from vpd_jax.data.bundled import generate

FENCE = "`" * 3


def _all():
    return bundled.bundled_problems("train") + bundled.bundled_problems("eval")


def test_committed_jsonl_is_what_the_specs_generate():
    for name, text in generate.render_files().items():
        committed = (bundled.BUNDLED_DIR / name).read_text()
        assert committed == text, (
            f"{name} is stale: run python -m vpd_jax.data.bundled.generate")


def test_shape_of_the_set():
    train, eval_ = bundled.bundled_problems("train"), bundled.bundled_problems("eval")
    problems = train + eval_
    ids = [p.question_id for p in problems]
    assert len(problems) >= 60 and len(set(ids)) == len(ids)
    assert 0.25 <= len(eval_) / len(problems) <= 0.35  # about 70/30
    kinds = collections.Counter("functional" if p.func_name else "stdin" for p in problems)
    assert kinds["functional"] >= 20 and kinds["stdin"] >= 20
    for split in (train, eval_):  # both kinds and both difficulties in each split
        assert {bool(p.func_name) for p in split} == {True, False}
        assert {p.difficulty for p in split} == {"easy", "medium"}
    assert sum(p.difficulty == "easy" for p in problems) >= len(problems) / 2


@pytest.mark.parametrize("problem", _all(), ids=lambda p: p.question_id)
def test_each_problem(problem):
    assert len(problem.all_tests) >= 5 and len(problem.private_tests) >= 4
    testtype = "functional" if problem.func_name else "stdin"
    assert {t.testtype for t in problem.all_tests} == {testtype}
    assert "Example" in problem.question_content
    first = problem.public_tests[0]
    if problem.func_name:
        assert problem.starter_code.startswith("class Solution:")
        assert f"def {problem.func_name}(self" in problem.starter_code
        assert f"Output: {first.output}" in problem.question_content
    else:
        assert problem.starter_code == ""
        assert first.input.strip() in problem.question_content
    assert problem.question_id in reference_solutions()


def _wrong(problem):
    """A plausible but wrong program: right shape, wrong answer."""
    if problem.func_name:
        return (f"class Solution:\n    def {problem.func_name}(self, *args):\n"
                f"        return None\n")
    return "import sys\nsys.stdin.read()\nprint('wrong')\n"


@pytest.fixture(scope="module")
def feedback_client():
    from vpd_jax import feedback
    with feedback.start_server(workers=2) as server:
        yield server.client()


def test_reference_solutions_pass_and_wrong_ones_fail(feedback_client):
    problems = _all()
    solutions = reference_solutions()
    pairs = [(p, f"{FENCE}python\n{solutions[p.question_id]}{FENCE}\n") for p in problems]
    results = feedback_client.grade_batch(pairs)
    failed = {p.question_id: (r["verdict"], r["critique"][:300])
              for p, r in zip(problems, results) if not r["passed"]}
    assert not failed, json.dumps(failed, indent=1)
    assert all(r["reward"] == 1.0 and r["tests_passed"] == r["tests_total"] for r in results)
    wrong = feedback_client.grade_batch(
        [(p, f"{FENCE}python\n{_wrong(p)}{FENCE}\n") for p in problems])
    assert not any(r["passed"] for r in wrong)
    assert {r["verdict"] for r in wrong} <= {"wrong_answer", "runtime_error"}
    assert all(r["reward"] == 0.0 for r in wrong)
