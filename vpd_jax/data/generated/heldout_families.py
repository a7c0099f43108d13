"""Templates that only the eval split uses: no train problem comes from them.

They combine skills the train families teach (reading a line, a loop or a
comprehension over a list or a string, a condition) into tasks no train
statement asks for: digits of a number, words of a sentence, positions in a
list, neighbouring pairs. Passing them measures generalisation beyond the
train templates, not recall of a seen program with a new constant.
"""

from __future__ import annotations

from vpd_jax.data.generated._family import LIST_NAMES, Instance, draw_inputs, family, ints, sentence
from vpd_jax.data.generated.functional_families import functional

DIGITS = {"sum": ("the sum of its digits", "sum(int(c) for c in s)"),
          "max": ("its largest digit", "max(s)"),
          "reverse": ("its digits in reverse order, as a number without leading zeros",
                      "int(s[::-1])"),
          "even": ("how many of its digits are even", "sum(1 for c in s if int(c) % 2 == 0)"),
          "nonzero": ("how many of its digits are not zero", "sum(1 for c in s if c != '0')")}


@family("digits", "stdin", tuple(DIGITS))
def digits(rng, key):
    say, expr = DIGITS[key[0]]
    return Instance(
        "Digits of a Number", f"Read a non-negative integer n. Print {say}.",
        f"s = input().strip()\nprint({expr})\n",
        draw_inputs(rng, lambda r: f"{r.randint(0, 10 ** r.randint(1, 6))}\n"), "medium")


WORD_OPS = {"longest": ("the longest word (the first one if there is a tie)",
                        "max(words, key=len)"),
            "count": ("how many words there are", "len(words)"),
            "reverse": ("the words in reverse order, separated by single spaces",
                        "' '.join(words[::-1])"),
            "initials": ("the first letter of every word, joined with no spaces",
                         "''.join(w[0] for w in words)"),
            **{f"longer{k}": (f"how many words have more than {k} letters",
                              f"sum(1 for w in words if len(w) > {k})") for k in (3, 4)}}


@family("words", "stdin", tuple(WORD_OPS))
def words(rng, key):
    say, expr = WORD_OPS[key[0]]
    return Instance(
        "Words of a Sentence", f"Read a line of lowercase words separated by single spaces. "
        f"Print {say}.", f"words = input().split()\nprint({expr})\n",
        draw_inputs(rng, lambda r: sentence(r) + "\n"), "medium")


POSITIONS = {
    "first": ("the index of the first element equal to target, or -1 if there is none",
              ", target: int", "if target in {p}:\n    return {p}.index(target)\nreturn -1"),
    "last": ("the index of the last element equal to target, or -1 if there is none",
             ", target: int",
             "for i in range(len({p}) - 1, -1, -1):\n    if {p}[i] == target:\n"
             "        return i\nreturn -1"),
    "argmax": ("the index of its largest element (the first one if there is a tie)", "",
               "return {p}.index(max({p}))"),
    "argmin": ("the index of its smallest element (the first one if there is a tie)", "",
               "return {p}.index(min({p}))"),
}


@family("positions", "functional", tuple(POSITIONS))
def positions(rng, key):
    say, extra, body = POSITIONS[key[0]]
    p = rng.choice(LIST_NAMES)
    if extra:
        draw = lambda r: (ints(r, -5, 5, max_len=7), r.randint(-5, 5))
    else:
        draw = lambda r: (ints(r, -5, 5, max_len=7),)
    return functional(
        "Find a Position", f"Given a non-empty list of integers {p}{extra and ' and an integer target'}, "
        f"return {say}. Indices start at 0.", rng.choice(("findIndex", "locate", "position")),
        f"{p}: list[int]{extra}", "int", body.format(p=p), draw_inputs(rng, draw), "medium")


PAIRS = {"prefix": ("the running totals: element i is the sum of the first i + 1 elements",
                    "list[int]", "out, total = [], 0\nfor x in {p}:\n    total += x\n"
                    "    out.append(total)\nreturn out"),
         "diffs": ("the differences of neighbours: element i is {p}[i + 1] - {p}[i]", "list[int]",
                   "return [b - a for a, b in zip({p}, {p}[1:])]"),
         "sums": ("the sums of neighbours: element i is {p}[i] + {p}[i + 1]", "list[int]",
                  "return [a + b for a, b in zip({p}, {p}[1:])]"),
         "rises": ("how many times an element is larger than the one before it", "int",
                   "return sum(1 for a, b in zip({p}, {p}[1:]) if b > a)")}


@family("neighbours", "functional", tuple(PAIRS))
def neighbours(rng, key):
    say, returns, body = PAIRS[key[0]]
    p = rng.choice(LIST_NAMES)
    return functional(
        "Neighbouring Elements", f"Given a list of integers {p}, return {say.format(p=p)}.",
        rng.choice(("walk", "scan", "pairs")), f"{p}: list[int]", returns, body.format(p=p),
        draw_inputs(rng, lambda r: (ints(r, -9, 9, min_len=1, max_len=7),)), "medium")


FAMILIES = (digits, words, positions, neighbours)
