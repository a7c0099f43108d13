"""The task interface the trainer uses: sources, the user turn, grading.

A Task is data plus two functions. `user_prompt` writes the text of the user
turn (the chat template is applied elsewhere); `grade` turns completions
into `reward, passed, verdict, critique`, through the feedback server for
code and by key for multiple choice. `load_task` is the one factory, so a
config names a task and its options and never a builder class.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence
from typing import Any

from vpd_jax.data import (bundled, choice, code_records, generated, livecodebench, sciknoweval,
                          sources, vpd_generated)
from vpd_jax.data.example import Example, code_example

FENCE = "`" * 3
CODE_STDIN_INSTRUCTIONS = (
    "Write a Python program that reads the input from standard input and "
    f"prints the answer to standard output. Put the whole program in one "
    f"{FENCE}python code block.")
CODE_FUNCTIONAL_INSTRUCTIONS = (
    "Complete the method of this starter code and put the whole class in one "
    f"{FENCE}python code block:")
CHOICE_INSTRUCTIONS = (
    "Give the letter of the correct choice inside <answer></answer> tags, "
    "for example <answer>{first}</answer>.")


def code_prompt(example: Example) -> str:
    if example.starter_code.strip():
        return (f"{example.question.rstrip()}\n\n{CODE_FUNCTIONAL_INSTRUCTIONS}\n"
                f"{FENCE}python\n{example.starter_code.rstrip()}\n{FENCE}\n")
    return f"{example.question.rstrip()}\n\n{CODE_STDIN_INSTRUCTIONS}\n"


def choice_prompt(example: Example) -> str:
    lines = "\n".join(f"{label}. {text}" for label, text in example.choices)
    instructions = CHOICE_INSTRUCTIONS.format(first=example.choices[0][0])
    return f"{example.question.rstrip()}\n\n{lines}\n\n{instructions}\n"


@dataclasses.dataclass(frozen=True)
class Task:
    """A named task with its train and eval sources (sequences of Examples)."""

    name: str
    kind: str  # "code" | "choice"
    train: Sequence[Example]
    eval: Sequence[Example]

    def user_prompt(self, example: Example) -> str:
        return code_prompt(example) if example.kind == "code" else choice_prompt(example)

    def reference_completion(self, example: Example) -> str | None:
        """The assistant turn a supervised warm start trains on, or None when
        the data has no reference: for code, the reference program in the one
        fenced block the grader extracts; for choice, the tagged answer key."""
        if example.kind == "choice":
            return f"<answer>{example.answer}</answer>"
        code = example.problem.metadata.get("reference_solution") or _bundled_references().get(example.id)
        return generated.sft_target(code) if code else None

    def grade(self, examples: Sequence[Example], completions: Sequence[str],
              client: Any = None) -> list[dict]:
        """One result dict per completion, in order.

        Code goes to `client.grade_batch([(problem, completion), ...])` (a
        feedback-server client) in one call; with no client it is graded in
        this process by `vpd_jax.feedback.grade`, which is fine for tests and
        small evaluations. Each dict has at least `reward, passed, verdict,
        critique`.
        """
        if len(examples) != len(completions):
            raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
        results: list[dict] = [{} for _ in examples]
        code = [i for i, ex in enumerate(examples) if ex.kind == "code"]
        for i, ex in enumerate(examples):
            if ex.kind == "choice":
                results[i] = choice.grade_choice(ex, completions[i])
        if code:
            pairs = [(examples[i].problem, completions[i]) for i in code]
            for i, verdict in zip(code, _grade_code(pairs, client), strict=True):
                results[i] = dict(verdict)
        return results


@functools.lru_cache(maxsize=1)
def _bundled_references() -> dict[str, str]:
    return bundled.reference_solutions()


def _grade_code(pairs, client) -> list[dict]:
    if client is not None:
        return list(client.grade_batch(pairs))
    try:
        from vpd_jax.feedback import grade
    except ImportError as e:
        raise RuntimeError(
            "grading code needs vpd_jax.feedback.grade (or pass client= a "
            f"feedback-server client): {e}") from None
    return [grade(problem, completion) for problem, completion in pairs]


def _code_source(name, records, decode_problem, example=code_example) -> sources.ExampleSource:
    return sources.ExampleSource(
        records, lambda record, i: example(decode_problem(record, i)), name)


def load_task(name: str, **options: Any) -> Task:
    """The factory configs call. Names and options:

    - "vpd_problems": the bundled set. `use_tfds=False` (default) reads the
      JSONL in the repository; `use_tfds=True` builds/reads array_record
      under `data_dir`. Splits: train / eval.
    - "vpd_generated": problems drawn from templates (docs/DATA.md):
      `num_train` (default 4000), `num_eval` (default 60), `seed` (0),
      `eval_holdout` ("mixed" default, "combination" or "template": what
      eval holds out), and `use_tfds` / `data_dir` as for vpd_problems.
      Each problem's metadata carries its reference solution
      (`vpd_jax.data.generated.reference_pairs`).
    - "livecodebench": `data_dir`, `manual_dir` (the JSONL files), `release`
      ("v1".."v6", default "v6") or `config` (a LiveCodeBenchConfig),
      `split_feedback_tests` (SDPO's 50/50 cut of private tests, train split
      only: eval always grades every test; default False), `seed`. Eval is
      the "test" split.
    - "sciknoweval": `data_dir`, `manual_dir` (raw_data), `config_name`
      (default "l3_mcq") or `config` (a SciKnowEvalConfig). Eval is "test".
    """
    loaders = {"vpd_problems": _load_bundled, "vpd_generated": _load_generated,
               "livecodebench": _load_livecodebench, "sciknoweval": _load_sciknoweval}
    if name not in loaders:
        raise ValueError(f"unknown task {name!r}: use one of {sorted(loaders)}")
    loader = loaders[name]
    try:
        inspect.signature(loader).bind(**options)
    except TypeError as e:
        raise TypeError(f"load_task({name!r}): {e}; see load_task's docstring for "
                        "the options of each task") from None
    return loader(**options)


def _local_task(name: str, problems, example, use_tfds: bool, data_dir: str | None,
                config=None) -> Task:
    """A task whose rows come from this repository: in memory from
    `problems(split)`, or through the TFDS builder `name` under data_dir."""
    split_sources = {}
    for split in bundled.SPLITS:
        source = f"{name}/{split}"
        if not use_tfds:
            split_sources[split] = sources.in_memory([example(p) for p in problems(split)], source)
            continue
        if data_dir is None:
            raise ValueError(f"{name} with use_tfds=True needs data_dir")
        records = sources.tfds_records(name, split, data_dir=data_dir, config=config)
        split_sources[split] = _code_source(
            source, records, lambda r, i, s=source: code_records.record_to_problem(r, s, i),
            example)
    return Task(name, "code", split_sources["train"], split_sources["eval"])


def _load_bundled(use_tfds: bool = False, data_dir: str | None = None) -> Task:
    return _local_task("vpd_problems", bundled.bundled_problems, code_example, use_tfds, data_dir)


def _generated_example(problem) -> Example:
    return code_example(problem, family=problem.metadata["family"],
                        held_out=problem.metadata["held_out"])


def _load_generated(num_train: int = vpd_generated.DEFAULTS["num_train"],
                    num_eval: int = vpd_generated.DEFAULTS["num_eval"],
                    seed: int = vpd_generated.DEFAULTS["seed"],
                    eval_holdout: str = vpd_generated.DEFAULTS["eval_holdout"],
                    use_tfds: bool = False, data_dir: str | None = None) -> Task:
    sizes = {"train": num_train, "eval": num_eval}
    return _local_task(
        "vpd_generated",
        lambda split: generated.generated_problems(split, sizes[split], seed, eval_holdout),
        _generated_example, use_tfds, data_dir,
        config=vpd_generated.generated_config(num_train, num_eval, seed, eval_holdout))


def _load_livecodebench(data_dir: str, manual_dir: str | None = None,
                        release: str = "v6", config=None,
                        split_feedback_tests: bool = False, seed: int = 0) -> Task:
    if config is None:
        if release not in livecodebench.RELEASE_FILES:
            raise ValueError(f"livecodebench release {release!r} not in "
                             f"{sorted(livecodebench.RELEASE_FILES)}")
        name = f"livecodebench/{release}"
    else:
        name = f"livecodebench/{config.name}"

    def decode(record, index, source, split):
        problem = code_records.record_to_problem(record, source, index)
        # SDPO's cut is for training rewards only: evaluation grades every
        # test, or pass@1 would not be LiveCodeBench's (DESIGN.md section 5).
        if split_feedback_tests and split == "train":
            problem = livecodebench.split_feedback_tests(problem, seed)
        return problem

    split_sources = {}
    for split in ("train", "test"):
        source = f"{name}/{split}"
        records = sources.tfds_records("livecodebench" if config else name, split,
                                       data_dir=data_dir, manual_dir=manual_dir,
                                       config=config)
        split_sources[split] = _code_source(
            source, records, lambda r, i, s=source, sp=split: decode(r, i, s, sp))
    return Task("livecodebench", "code", split_sources["train"], split_sources["test"])


def _load_sciknoweval(data_dir: str, manual_dir: str | None = None,
                      config_name: str = "l3_mcq", config=None) -> Task:
    name = f"sciknoweval/{config.name if config else config_name}"
    split_sources = {}
    for split in ("train", "test"):
        records = sources.tfds_records("sciknoweval" if config else name, split,
                                       data_dir=data_dir, manual_dir=manual_dir,
                                       config=config)
        split_sources[split] = sources.ExampleSource(
            records, lambda r, _: sciknoweval.record_to_example(r), f"{name}/{split}")
    return Task("sciknoweval", "choice", split_sources["train"], split_sources["test"])
