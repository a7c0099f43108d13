"""The record every task hands to the trainer, and the data-format error.

An `Example` is what one prompt of a batch needs on the host: the text the
user turn shows, and what grading needs (a `Problem` for code, the choices
and answer key for multiple choice). It is built from an array_record row or
a bundled JSONL row, never from a network call, so batches are cheap.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vpd_jax.feedback.problems import Problem

KINDS = ("code", "choice")


class DataFormatError(ValueError):
    """A data row that does not follow its format; the message names
    file, row and field so the bad line can be fixed where it is."""


def where(source: str, row_index: int | str, field: str | None = None) -> str:
    """`file: row N: field 'x'`, the prefix of every data-format error."""
    text = f"{source}: row {row_index}"
    return text if field is None else f"{text}: field {field!r}"


@dataclasses.dataclass(frozen=True)
class Example:
    """One prompt of a task.

    `question` is the statement as the data set gives it; the task's
    `user_prompt` adds the starter code and answer-format instructions.
    For code, `problem` holds the tests; for choice, `choices` are
    (label, text) pairs and `answer` is the key's label.
    """

    id: str
    question: str
    kind: str  # "code" | "choice"
    starter_code: str = ""
    problem: Problem | None = None
    choices: tuple[tuple[str, str], ...] = ()
    answer: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Example {self.id}: kind {self.kind!r} not in {KINDS}")
        if self.kind == "code" and self.problem is None:
            raise ValueError(f"Example {self.id}: a code example needs a Problem")
        if self.kind == "choice":
            labels = [label for label, _ in self.choices]
            if len(labels) < 2 or self.answer not in labels:
                raise ValueError(
                    f"Example {self.id}: a choice example needs >= 2 choices and "
                    f"an answer among their labels {labels}, got {self.answer!r}")


def code_example(problem: Problem, **metadata: Any) -> Example:
    """The Example of a LiveCodeBench-format problem."""
    return Example(id=problem.question_id, question=problem.question_content,
                   kind="code", starter_code=problem.starter_code,
                   problem=problem,
                   metadata={"difficulty": problem.difficulty,
                             "platform": problem.platform,
                             "contest_date": problem.contest_date, **metadata})
