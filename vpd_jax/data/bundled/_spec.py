"""How a bundled problem is written down before it becomes a JSONL row.

We author each problem once, as a small Python record holding the statement,
the test inputs and a reference solution. The expected outputs are computed
by running the reference solution (see `generate.py`), so a typo in a
hand-written output cannot silently make a problem unsolvable; the one
hand-written output, the example shown in the statement, is checked against
the reference when the rows are generated.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

# Every test input of a functional problem is a tuple of positional arguments.
Args = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class StdinSpec:
    """A problem whose program reads stdin and writes stdout."""

    question_id: str
    title: str
    split: str  # "train" | "eval"
    difficulty: str  # "easy" | "medium"
    statement: str  # the task, the input format and the output format
    example: tuple[str, str]  # (stdin, expected stdout), shown in the statement
    inputs: tuple[str, ...]  # further stdin texts; outputs come from `solution`
    solution: str  # reference program

    def render_statement(self) -> str:
        stdin, stdout = self.example
        return (f"{self.statement.strip()}\n\nExample\nInput:\n{stdin.rstrip()}\n"
                f"Output:\n{stdout.rstrip()}\n")


@dataclasses.dataclass(frozen=True)
class FunctionalSpec:
    """A LeetCode-style problem: implement `Solution.<func_name>`."""

    question_id: str
    title: str
    split: str
    difficulty: str
    statement: str
    func_name: str
    params: str  # typed parameter list, e.g. "nums: List[int], k: int"
    returns: str  # return annotation, e.g. "int"
    example: tuple[Args, Any]  # (arguments, expected return value)
    inputs: tuple[Args, ...]
    solution: str  # reference `class Solution`

    @property
    def param_names(self) -> list[str]:
        return [p.split(":")[0].strip() for p in self.params.split(",") if p.strip()]

    def starter_code(self) -> str:
        return (f"class Solution:\n    def {self.func_name}(self, {self.params}) "
                f"-> {self.returns}:\n        ")

    def render_statement(self) -> str:
        args, expected = self.example
        shown = ", ".join(f"{name} = {json.dumps(value)}"
                          for name, value in zip(self.param_names, args))
        return (f"{self.statement.strip()}\n\nExample\nInput: {shown}\n"
                f"Output: {json.dumps(expected)}\n")


def functional_input(args: Args) -> str:
    """LiveCodeBench's functional input: one JSON value per line."""
    return "\n".join(json.dumps(a) for a in args)
