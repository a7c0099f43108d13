"""Functional (LeetCode-style) families: complete one method of `Solution`.

The starter code the model sees is written from `func_name`, `params` and
`returns` (bundled/_spec.py), and the reference solution repeats that exact
signature, so a warm start teaches the model to fill in the starter code it
is shown. Annotations use `list[int]`, which needs no import.
"""

from __future__ import annotations

from vpd_jax.data.generated._family import (LIST_NAMES, STR_NAMES, Instance, draw_inputs, family,
                                            ints, letters, word)
from vpd_jax.data.generated.stdin_families import ARITH, CHANGE, CONDITIONS


def method(func_name: str, params: str, returns: str, body: str) -> str:
    """`class Solution` with one method; `body` is indented 8 spaces per line."""
    lines = "".join(f"        {line}\n" for line in body.splitlines())
    return (f"class Solution:\n    def {func_name}(self, {params}) -> {returns}:\n"
            f"{lines}")


def functional(title, statement, func_name, params, returns, body, inputs, difficulty):
    return Instance(title, statement, method(func_name, params, returns, body), inputs,
                    difficulty, func_name=func_name, params=params, returns=returns)


MAPS = {**{(op, c): (f"{CHANGE[op]} {c}", f"x {op} {c}") for op in ARITH for c in (2, 3, 4, 5)},
        ("square", 0): ("squared", "x * x"), ("negate", 0): ("negated", "-x"),
        ("abs", 0): ("replaced by its absolute value", "abs(x)")}


@family("f_map", "functional", tuple(MAPS))
def f_map(rng, key):
    say, expr = MAPS[key]
    p = rng.choice(LIST_NAMES)
    name = rng.choice(("transform", "mapAll", "convert", "applyEach"))
    return functional(
        "Transform a List", f"Given a list of integers {p}, return a new list where every "
        f"element is {say}.", name, f"{p}: list[int]", "list[int]",
        f"return [{expr} for x in {p}]",
        draw_inputs(rng, lambda r: (ints(r, min_len=0),)), "easy")


REDUCE = {"sum": ("the sum of its elements", "sum({p})", "sumOf"),
          "max": ("its largest element", "max({p})", "largest"),
          "min": ("its smallest element", "min({p})", "smallest"),
          "len": ("its length", "len({p})", "size"),
          "range": ("its largest element minus its smallest element", "max({p}) - min({p})", "spread"),
          "squares": ("the sum of the squares of its elements", "sum(x * x for x in {p})", "sumSquares"),
          "abs_sum": ("the sum of the absolute values of its elements", "sum(abs(x) for x in {p})",
                      "absSum")}


@family("f_reduce", "functional", tuple(REDUCE))
def f_reduce(rng, key):
    (op,) = key
    say, expr, name = REDUCE[op]
    p = rng.choice(LIST_NAMES)
    return functional(
        "Reduce a List", f"Given a non-empty list of integers {p}, return {say}.",
        rng.choice((name, "solve", "compute")), f"{p}: list[int]", "int",
        f"return {expr.format(p=p)}", draw_inputs(rng, lambda r: (ints(r),)),
        "easy" if op in ("sum", "max", "min", "len") else "medium")


@family("f_filter", "functional", tuple(CONDITIONS))
def f_filter(rng, key):
    say, test = CONDITIONS[key]
    p = rng.choice(LIST_NAMES)
    keep = rng.choice(("keep", "remove"))
    test_kept = test if keep == "keep" else f"not {test}"
    return functional(
        "Filter a List", f"Given a list of integers {p}, {keep} the elements that are {say} "
        "and return the rest in their original order." if keep == "remove" else
        f"Given a list of integers {p}, return the elements that are {say}, in their "
        "original order.", rng.choice(("filterList", "select", "pick")),
        f"{p}: list[int]", "list[int]", f"return [x for x in {p} if {test_kept}]",
        draw_inputs(rng, lambda r: (ints(r, -10, 10, min_len=0, max_len=7),)), "medium")


STRINGS = {("upper", ""): ("in uppercase", "{s}.upper()"),
           ("reverse", ""): ("reversed", "{s}[::-1]"),
           ("mirror", ""): ("followed by its reverse", "{s} + {s}[::-1]"),
           **{("repeat", str(k)): (f"repeated {k} times", f"{{s}} * {k}") for k in (2, 3)},
           **{("remove", c): (f"with every '{c}' removed", f"{{s}}.replace('{c}', '')")
              for c in "aeo"},
           **{("swap", c): (f"with every '{c}' replaced by '*'", f"{{s}}.replace('{c}', '*')")
              for c in "ain"},
           **{("first", str(k)): (f"cut to its first {k} characters", f"{{s}}[:{k}]")
              for k in (2, 3)}}


@family("f_string", "functional", tuple(STRINGS))
def f_string(rng, key):
    say, expr = STRINGS[key]
    s = rng.choice(STR_NAMES)
    return functional(
        "Transform a String", f"Given a string {s} of lowercase letters, return {s} {say}.",
        rng.choice(("transform", "convert", "rewrite")), f"{s}: str", "str",
        f"return {expr.format(s=s)}",
        draw_inputs(rng, lambda r: (word(r) if r.random() < 0.5 else letters(r, lo=0),)),
        "easy" if key[0] in ("upper", "reverse", "repeat") else "medium")


CHECKS = {**{("div", str(k)): (f"n is divisible by {k}", f"n % {k} == 0", "int") for k in (2, 3, 4, 5)},
          **{("gt", str(t)): (f"n is greater than {t}", f"n > {t}", "int") for t in (0, 10)},
          ("palindrome", ""): ("s reads the same forwards and backwards", "s == s[::-1]", "str"),
          **{("has", c): (f"s contains the letter '{c}'", f"'{c}' in s", "str") for c in "aeo"},
          **{("starts", c): (f"s starts with '{c}'", f"s.startswith('{c}')", "str") for c in "rst"}}


@family("f_check", "functional", tuple(CHECKS))
def f_check(rng, key):
    say, test, kind = CHECKS[key]
    if kind == "int":
        draw = lambda r: (r.choice((r.randint(-50, 50), 4 * r.randint(-9, 9), 3 * r.randint(-9, 9))),)
        params, given = "n: int", "an integer n"
    else:
        draw = lambda r: (r.choice((word(r), letters(r), "level", "racecar", "noon")),)
        params, given = "s: str", "a string s"
    return functional(
        "Check a Property", f"Given {given}, return true if {say}, otherwise return false.",
        rng.choice(("check", "isValid", "test")), params, "bool", f"return {test}",
        draw_inputs(rng, draw), "easy")


COUNTS = {**{("char", c): (f"how many times the letter '{c}' appears in {{s}}",
                           f"{{s}}.count('{c}')") for c in "aeont"},
          ("vowels", ""): ("how many vowels (a, e, i, o, u) {s} contains",
                           "sum(1 for c in {s} if c in 'aeiou')"),
          ("words", ""): ("how many words (separated by single spaces) {s} contains",
                          "len({s}.split())")}


@family("f_count", "functional", tuple(COUNTS))
def f_count(rng, key):
    say, expr = COUNTS[key]
    s = rng.choice(STR_NAMES)
    if key[0] == "words":
        draw = lambda r: (" ".join(word(r) for _ in range(r.randint(1, 4))),)
    else:
        draw = lambda r: (r.choice((word(r), letters(r, lo=0))),)
    return functional(
        "Count in a String", f"Given a string {s}, return {say.format(s=s)}.",
        rng.choice(("count", "countIn", "tally")), f"{s}: str", "int",
        f"return {expr.format(s=s)}", draw_inputs(rng, draw), "medium")


TWO = {"sum": ("a + b", "their sum"), "diff": ("a - b", "a minus b"),
       "prod": ("a * b", "their product"), "max": ("max(a, b)", "the larger one"),
       "min": ("min(a, b)", "the smaller one"), "absdiff": ("abs(a - b)", "the absolute difference")}


@family("f_two", "functional", tuple(TWO))
def f_two(rng, key):
    (op,) = key
    expr, say = TWO[op]
    return functional(
        "Two Numbers", f"Given two integers a and b, return {say}.",
        rng.choice(("combine", "calc", "twoNumbers")), "a: int, b: int", "int", f"return {expr}",
        draw_inputs(rng, lambda r: (r.randint(-40, 40), r.randint(-40, 40))), "easy")


FAMILIES = (f_map, f_reduce, f_filter, f_string, f_check, f_count, f_two)
