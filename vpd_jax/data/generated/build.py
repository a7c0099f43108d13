"""Draws generated problems for a split, deterministically from a seed.

Held out from train, by construction and whatever the seeds:
- *combinations*: for every train family, the 20% of its parameter keys
  with the smallest hash of (family, key) belong to eval only, so an eval
  problem of a seen template asks for an operation, constant or I/O format
  mix that no train problem asks for;
- *templates*: the families of `heldout_families` appear in eval only.
Eval draws every third problem from a held-out template, the rest from
held-out combinations; `metadata["held_out"]` says which, so pass@1 can be
read for each.

Each split is one seeded stream: problem i of a larger draw is problem i of
a smaller one, and two hosts with the same (split, num, seed) agree. The
expected outputs come from running the trusted reference solution in this
process (`bundled/generate.py`), never from a hand-written value.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

from vpd_jax.data.bundled import generate
from vpd_jax.data.bundled._spec import FunctionalSpec, StdinSpec
from vpd_jax.data.generated import functional_families, heldout_families, stdin_families
from vpd_jax.data.generated._family import Family, Instance, Key
from vpd_jax.feedback import compare
from vpd_jax.feedback.problems import Problem, parse_problem_row

SPLITS = ("train", "eval")
TRAIN_FAMILIES: tuple[Family, ...] = stdin_families.FAMILIES + functional_families.FAMILIES
HELDOUT_FAMILIES: tuple[Family, ...] = heldout_families.FAMILIES
EVAL_KEY_FRACTION = 0.2  # of each train family's keys, eval only
TEMPLATE_EVERY = 3  # "mixed" eval: problem i comes from a held-out template when i % 3 == 2
# What eval holds out: both kinds (every third problem a held-out template),
# or one kind only, to make the eval easier ("combination") or stricter
# ("template") when a model's pass@1 sits at an edge of the useful range.
EVAL_HOLDOUTS = ("mixed", "combination", "template")
# A draw that a trivial program passes is redrawn (see `_shortcut`).
MAX_REDRAWS = 50


def _rank(family: Family, key: Key) -> str:
    return hashlib.sha1(f"{family.name}:{key!r}".encode()).hexdigest()


def eval_keys(family: Family) -> frozenset[Key]:
    """The keys of a train family that only eval problems use."""
    count = max(1, math.ceil(EVAL_KEY_FRACTION * len(family.keys)))
    return frozenset(sorted(family.keys, key=lambda k: _rank(family, k))[:count])


def train_keys(family: Family) -> tuple[Key, ...]:
    held = eval_keys(family)
    return tuple(k for k in family.keys if k not in held)


def _spec(family: Family, instance: Instance, split: str):
    """The bundled-set spec of a drawn instance (its example output computed)."""
    digest = hashlib.sha1(f"{instance.statement}\n{instance.inputs!r}".encode()).hexdigest()
    common = dict(question_id=f"gen_{family.name}_{digest[:12]}", title=instance.title,
                  split=split, difficulty=instance.difficulty, statement=instance.statement,
                  solution=instance.solution)
    example, *rest = instance.inputs
    if family.kind == "stdin":
        return StdinSpec(example=(example, generate.run_stdin(instance.solution, example)),
                         inputs=tuple(rest), **common)
    shown = generate.run_functional(instance.solution, instance.func_name, example)
    return FunctionalSpec(func_name=instance.func_name, params=instance.params,
                          returns=instance.returns, example=(example, shown),
                          inputs=tuple(rest), **common)


def _shortcut(tests: list[dict[str, str]]) -> str | None:
    """The trivial program that passes every test, if one does: printing
    (returning) the example's answer, or echoing the input back. Judged by
    the grader's own comparison for stdin, by JSON equality for functional."""
    if tests[0]["testtype"] == "stdin":
        same = lambda actual, expected: compare.compare_stdout(actual, expected)[0]
        first_arg = lambda test: test["input"]
    else:
        same = lambda actual, expected: json.loads(actual) == json.loads(expected)
        first_arg = lambda test: test["input"].split("\n")[0]
    if all(same(tests[0]["output"], t["output"]) for t in tests):
        return "a constant answer"
    if all(same(first_arg(t), t["output"]) for t in tests):
        return "echoing the input"
    return None


def draw_problem(family: Family, key: Key, rng: random.Random, split: str,
                 held_out: str) -> Problem:
    """One problem of `family` for `key` that no trivial program passes."""
    for _ in range(MAX_REDRAWS):
        instance = family.make(rng, key)
        row = generate.to_row(_spec(family, instance, split))
        shortcut = _shortcut(json.loads(row["public_test_cases"])
                             + json.loads(row["private_test_cases"]))
        if shortcut is None:
            break
    else:
        raise ValueError(f"family {family.name}, key {key}: {MAX_REDRAWS} draws in a row pass "
                         f"by {shortcut}; widen the family's input draw")
    metadata = json.loads(row["metadata"])
    metadata.update(family=family.name, key=json.dumps(key), held_out=held_out,
                    reference_solution=instance.solution)
    row["metadata"] = json.dumps(metadata)
    return parse_problem_row(row, source=f"vpd_generated/{split}")


def _choice(rng: random.Random, split: str, index: int,
            eval_holdout: str) -> tuple[Family, tuple[Key, ...], str]:
    """(family, the keys it may use, held_out label) of problem `index`."""
    if split == "train":
        family = rng.choice(TRAIN_FAMILIES)
        return family, train_keys(family), "none"
    if eval_holdout == "template" or (
            eval_holdout == "mixed" and index % TEMPLATE_EVERY == TEMPLATE_EVERY - 1):
        family = rng.choice(HELDOUT_FAMILIES)
        return family, family.keys, "template"
    family = rng.choice(TRAIN_FAMILIES)
    return family, tuple(sorted(eval_keys(family), key=repr)), "combination"


def generated_problems(split: str, num: int, seed: int = 0,
                       eval_holdout: str = "mixed") -> list[Problem]:
    """`num` distinct problems of `split` ("train" or "eval"); `eval_holdout`
    (one of EVAL_HOLDOUTS) picks what eval holds out and leaves train alone."""
    if split not in SPLITS:
        raise ValueError(f"generated split {split!r} not in {SPLITS}")
    if eval_holdout not in EVAL_HOLDOUTS:
        raise ValueError(f"eval_holdout {eval_holdout!r} not in {EVAL_HOLDOUTS}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    rng = random.Random(f"vpd_generated:{seed}:{split}")
    problems: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(problems) < num:
        tries += 1
        if tries > 20 * num + 1000:
            raise ValueError(f"asked for {num} distinct {split} problems, found {len(problems)} "
                             "before repeats took over; ask for fewer")
        family, keys, held_out = _choice(rng, split, len(problems), eval_holdout)
        problem = draw_problem(family, rng.choice(keys), rng, split, held_out)
        if problem.question_content not in seen:
            seen.add(problem.question_content)
            problems.append(problem)
    return problems

