"""What a problem family is, and the small random pieces families share.

A family is a template: `keys` lists its *parameter combinations* (the
operation, the constants, the input and output formats: everything that
changes what a correct program must compute or parse), and `make(rng, key)`
writes one problem for a combination, drawing the surface (wording, variable
and method names, the example and the test inputs) from `rng`. The split
into train and eval is made over keys (`build.py`), so an eval problem of a
seen family asks for a combination no train problem asks for, whatever the
seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

Key = tuple[Any, ...]
KINDS = ("stdin", "functional")
DIFFICULTIES = ("easy", "medium")
# One example shown in the statement plus this many further tests; the row
# writer (bundled/generate.py) makes the example and the first of these
# public and the rest private: 2 public + 3 private, ~0.3 s to grade a
# correct program on the feedback server.
NUM_TESTS_AFTER_EXAMPLE = 4


@dataclasses.dataclass(frozen=True)
class Instance:
    """One drawn problem, before its expected outputs are computed.

    `inputs[0]` is the example of the statement. For stdin problems an input
    is the stdin text; for functional ones it is a tuple of arguments.
    """

    title: str
    statement: str  # task, input format and output format; no example
    solution: str  # the trusted reference program (1-8 lines)
    inputs: tuple[Any, ...]
    difficulty: str
    func_name: str = ""  # functional only
    params: str = ""  # functional only: "nums: list[int], k: int"
    returns: str = ""  # functional only


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "stdin" | "functional"
    keys: tuple[Key, ...]
    make: Callable[[random.Random, Key], Instance]

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name}: kind {self.kind!r} not in {KINDS}")
        if len(set(self.keys)) != len(self.keys) or not self.keys:
            raise ValueError(f"family {self.name}: keys must be non-empty and distinct")


def family(name: str, kind: str, *axes: Sequence[Any]):
    """Decorator: a `make(rng, key)` function becomes a Family whose keys are
    the product of `axes` (each axis a list of parameter values; an axis may
    itself list tuples, for operations that carry their own constant)."""
    def wrap(make):
        keys = tuple(tuple(_flatten(combo)) for combo in itertools.product(*axes))
        return Family(name, kind, keys, make)
    return wrap


def _flatten(combo):
    for part in combo:
        yield from (part if isinstance(part, tuple) else (part,))


# ---- random pieces ------------------------------------------------------

WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "ocean",
         "green", "house", "light", "zebra", "mango", "robot", "candle", "forest",
         "banana", "kitten", "silver", "planet", "window", "garden", "pepper",
         "rocket", "level", "noon", "radar", "civic", "book", "sky", "tree", "code")
LIST_NAMES = ("nums", "arr", "values", "xs", "numbers", "data")
INT_NAMES = ("n", "x", "k", "num", "value")
STR_NAMES = ("s", "word", "text", "t")


def ints(rng: random.Random, lo: int = -20, hi: int = 20, *, min_len: int = 1,
         max_len: int = 6) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(min_len, max_len))]


def word(rng: random.Random) -> str:
    return rng.choice(WORDS)


def letters(rng: random.Random, alphabet: str = "abcdehilmnorst", lo: int = 1,
            hi: int = 8) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def sentence(rng: random.Random, lo: int = 1, hi: int = 5) -> str:
    return " ".join(word(rng) for _ in range(rng.randint(lo, hi)))


def rename(text: str, old: str, new: str) -> str:
    """`text` with the variable name `old` (whole words only) written `new`."""
    return re.sub(rf"\b{old}\b", new, text)


def draw_inputs(rng: random.Random, draw: Callable[[random.Random], Any],
                count: int = 1 + NUM_TESTS_AFTER_EXAMPLE) -> tuple[Any, ...]:
    """`count` distinct inputs from `draw` (the example first)."""
    seen: list[Any] = []
    for _ in range(50 * count):
        value = draw(rng)
        if value not in seen:
            seen.append(value)
        if len(seen) == count:
            return tuple(seen)
    raise ValueError(f"could not draw {count} distinct inputs; widen the draw")


# ---- stdin list formats -------------------------------------------------
# How a list of integers reaches a stdin program: (ways to say it, writer of
# the stdin text, reference line that reads it into `nums`).
LIST_FORMATS = {
    "count_first": (("The first line holds n. The second line holds n integers.",
                     "The first line is a count n; the next line has n integers."),
                    lambda xs: f"{len(xs)}\n{' '.join(map(str, xs))}\n",
                    "input()\nnums = list(map(int, input().split()))"),
    "one_line": (("One line holds integers separated by spaces.",
                  "Read a line of space-separated integers."),
                 lambda xs: f"{' '.join(map(str, xs))}\n",
                 "nums = list(map(int, input().split()))"),
    "commas": (("One line holds integers separated by commas.",
                "Read a line of integers separated by commas (no spaces)."),
               lambda xs: f"{','.join(map(str, xs))}\n",
               "nums = list(map(int, input().split(',')))"),
}
