"""Stdin families: read a line or two, print one answer.

Ordered from nearly trivial (one arithmetic operation on one integer) to a
loop or a condition over a list. Each `make` draws the surface (wording,
variable names, the example and test inputs) from `rng`; the key fixes
what the program must compute and how the input is laid out.
"""

from __future__ import annotations

from vpd_jax.data.generated._family import (INT_NAMES, LIST_FORMATS, Instance, draw_inputs, family,
                                            ints, letters, rename, word)

ARITH = {"+": ("plus", "Add {c} to {v}"), "-": ("minus", "Subtract {c} from {v}"),
         "*": ("times", "Multiply {v} by {c}")}
CHANGE = {"+": "increased by", "-": "decreased by", "*": "multiplied by"}


@family("int_arith", "stdin", tuple(ARITH), range(2, 13))
def int_arith(rng, key):
    op, c = key
    v = rng.choice(INT_NAMES)
    word_, verb = ARITH[op]
    ask = rng.choice((f"Print {v} {op} {c}.", f"Print {v} {word_} {c}.",
                      verb.format(c=c, v=v) + " and print the result."))
    return Instance(
        "Arithmetic with a Constant", f"Read an integer {v}. {ask}",
        f"{v} = int(input())\nprint({v} {op} {c})\n",
        draw_inputs(rng, lambda r: f"{r.randint(-50, 99)}\n"), "easy")


TWO_INTS = {"sum": ("{a} + {b}", ("their sum", "{a} + {b}")),
            "diff": ("{a} - {b}", ("{a} - {b}", "{a} minus {b}")),
            "prod": ("{a} * {b}", ("their product", "{a} * {b}")),
            "max": ("max({a}, {b})", ("the larger of the two", "the maximum of {a} and {b}")),
            "min": ("min({a}, {b})", ("the smaller of the two", "the minimum of {a} and {b}")),
            "absdiff": ("abs({a} - {b})", ("|{a} - {b}|", "the absolute difference of {a} and {b}")),
            "mod": ("{a} % {b}", ("the remainder of {a} divided by {b}", "{a} mod {b}"))}
LAYOUTS = {"one_line": ("on one line, separated by a space", "{a}, {b} = map(int, input().split())",
                        "{0} {1}\n"),
           "two_lines": ("on two lines", "{a} = int(input())\n{b} = int(input())", "{0}\n{1}\n")}


@family("two_ints", "stdin", tuple(TWO_INTS), tuple(LAYOUTS))
def two_ints(rng, key):
    op, layout = key
    a, b = rng.choice((("a", "b"), ("x", "y"), ("p", "q"), ("m", "n")))
    expr, says = TWO_INTS[op]
    where, read, shape = LAYOUTS[layout]
    if op == "mod":  # b > 0 and a >= 0: no negative-modulo surprises
        draw = lambda r: shape.format(r.randint(0, 99), r.randint(1, 12))
    else:
        draw = lambda r: shape.format(r.randint(-30, 30), r.randint(-30, 30))
    return Instance(
        "Two Integers", f"Read two integers {a} and {b} {where}. Print "
        f"{rng.choice(says).format(a=a, b=b)}.",
        f"{read.format(a=a, b=b)}\nprint({expr.format(a=a, b=b)})\n",
        draw_inputs(rng, draw), "easy")


STRING_OPS = {("upper", 0): ("in uppercase", "{s}.upper()"),
              ("reverse", 0): ("reversed", "{s}[::-1]"),
              ("length", 0): ("its length", "len({s})"),
              ("double", 0): ("with every letter written twice", "''.join(c * 2 for c in {s})"),
              **{("first", k): (f"its first {k} letters", f"{{s}}[:{k}]") for k in (2, 3, 4)},
              **{("last", k): (f"its last {k} letters", f"{{s}}[-{k}:]") for k in (2, 3, 4)},
              **{("repeat", k): (f"repeated {k} times with no spaces", f"{{s}} * {k}")
                 for k in (2, 3)}}


@family("string_op", "stdin", tuple(STRING_OPS))
def string_op(rng, key):
    s = rng.choice(("s", "w", "word"))
    say, expr = STRING_OPS[key]
    what = rng.choice(("a word", "a string of lowercase letters"))
    ask = f"Print it {say}." if key[0] != "length" else "Print its length."
    return Instance(
        "String Transform", f"Read {what} {s}. {ask}",
        f"{s} = input().strip()\nprint({expr.format(s=s)})\n",
        draw_inputs(rng, lambda r: (word(r) if r.random() < 0.5 else letters(r, lo=2)) + "\n"),
        "easy" if key[0] in ("upper", "reverse", "length") else "medium")


REDUCE = {"sum": ("sum(nums)", ("their sum", "the sum of the integers")),
          "max": ("max(nums)", ("the largest of them", "the maximum")),
          "min": ("min(nums)", ("the smallest of them", "the minimum")),
          "count": ("len(nums)", ("how many integers there are", "the number of integers")),
          "range": ("max(nums) - min(nums)", ("the largest minus the smallest",)),
          "ends": ("nums[0] + nums[-1]", ("the first plus the last integer",))}


@family("list_reduce", "stdin", tuple(REDUCE), tuple(LIST_FORMATS))
def list_reduce(rng, key):
    op, fmt = key
    expr, says = REDUCE[op]
    shapes, write, read = LIST_FORMATS[fmt]
    shape = rng.choice(shapes)
    return Instance(
        "List Summary", f"{shape} Print {rng.choice(says)}.",
        f"{read}\nprint({expr})\n",
        draw_inputs(rng, lambda r: write(ints(r))),
        "easy" if op in ("sum", "max", "min", "count") else "medium")


CONDITIONS = {**{("gt", t): (f"greater than {t}", f"x > {t}") for t in (0, 2, 5)},
              **{("lt", t): (f"less than {t}", f"x < {t}") for t in (0, 3, 5)},
              ("even", 0): ("even", "x % 2 == 0"), ("odd", 0): ("odd", "x % 2 == 1"),
              **{("div", k): (f"divisible by {k}", f"x % {k} == 0") for k in (3, 4, 5)},
              **{("eq", t): (f"equal to {t}", f"x == {t}") for t in (0, 1, 7)}}


@family("count_if", "stdin", tuple(CONDITIONS), tuple(LIST_FORMATS))
def count_if(rng, key):
    *cond, fmt = key
    say, test = CONDITIONS[tuple(cond)]
    shapes, write, read = LIST_FORMATS[fmt]
    shape = rng.choice(shapes)
    ask = rng.choice((f"Print how many of them are {say}.",
                      f"Print the count of integers that are {say}."))
    return Instance(
        "Count Matching", f"{shape} {ask}",
        f"{read}\nprint(sum(1 for x in nums if {test}))\n",
        draw_inputs(rng, lambda r: write(ints(r, -10, 10, max_len=7))), "medium")


MAPS = {**{(op, c): (f"{CHANGE[op]} {c}", f"x {op} {c}") for op in ARITH for c in (2, 3, 5)},
        ("square", 0): ("squared", "x * x")}
OUTPUTS = {"spaces": ("on one line, separated by spaces", "print(*[{expr} for x in nums])\n"),
           "lines": ("one per line", "for x in nums:\n    print({expr})\n")}


@family("list_map", "stdin", tuple(MAPS), ("one_line", "commas"), tuple(OUTPUTS))
def list_map(rng, key):
    *op, fmt, out = key
    say, expr = MAPS[tuple(op)]
    shapes, write, read = LIST_FORMATS[fmt]
    shape = rng.choice(shapes)
    where, printer = OUTPUTS[out]
    return Instance(
        "Transform Each", f"{shape} Print every integer {say}, {where}.",
        f"{read}\n{printer.format(expr=expr)}",
        draw_inputs(rng, lambda r: write(ints(r))), "medium")


INT_CHECKS = {("even", 0): ("n is even", "n % 2 == 0"),
              ("positive", 0): ("n is positive", "n > 0"),
              ("negative", 0): ("n is negative", "n < 0"),
              **{("gt", t): (f"n is greater than {t}", f"n > {t}") for t in (10, 50)},
              **{("div", k): (f"n is divisible by {k}", f"n % {k} == 0") for k in (3, 5)}}
ANSWERS = (("YES", "NO"), ("Yes", "No"), ("TRUE", "FALSE"))


@family("yes_no", "stdin", tuple(INT_CHECKS), ANSWERS)
def yes_no(rng, key):
    *check, yes, no = key
    say, test = INT_CHECKS[tuple(check)]
    v = rng.choice(INT_NAMES)
    say, test = rename(say, "n", v), rename(test, "n", v)
    statement = rng.choice((
        f"Read an integer {v}. Print {yes} if {say}, otherwise print {no}.",
        f"Read an integer {v}. If {say}, print {yes}; if not, print {no}.",
        f"An integer {v} is given on one line. Print {yes} when {say} and {no} otherwise."))
    draw = lambda r: f"{r.choice((r.randint(-99, 99), 3 * r.randint(-9, 9), 5 * r.randint(-9, 9)))}\n"
    return Instance("Yes or No", statement,
                    f"{v} = int(input())\nprint({yes!r} if {test} else {no!r})\n",
                    draw_inputs(rng, draw), "medium")


LOOPS = {("sum_to", 0): ("1 + 2 + ... + n", "print(sum(range(1, n + 1)))\n", 30),
         ("squares", 0): ("1*1 + 2*2 + ... + n*n", "print(sum(i * i for i in range(1, n + 1)))\n", 20),
         ("factorial", 0): ("n! (1 * 2 * ... * n; 0! is 1)",
                            "f = 1\nfor i in range(2, n + 1):\n    f *= i\nprint(f)\n", 10),
         ("power", 2): ("2 to the power n", "print(2 ** n)\n", 20),
         ("power", 3): ("3 to the power n", "print(3 ** n)\n", 12),
         **{("multiples", k): (f"how many of 1, 2, ..., n are divisible by {k}",
                               f"print(sum(1 for i in range(1, n + 1) if i % {k} == 0))\n", 40)
            for k in (2, 3, 5)},
         ("odd_sum", 0): ("the sum of the odd numbers from 1 to n",
                          "print(sum(range(1, n + 1, 2)))\n", 30),
         ("countdown", 0): ("n, n-1, ..., 1 on one line, separated by spaces",
                            "print(*range(n, 0, -1))\n", 12)}


@family("loop_n", "stdin", tuple(LOOPS))
def loop_n(rng, key):
    say, body, top = LOOPS[key]
    low = 1 if key[0] == "countdown" else 0
    v = rng.choice(("n", "x", "k", "num"))
    say, body = rename(say, "n", v), rename(body, "n", v)
    statement = rng.choice((f"Read an integer {v} ({low} <= {v} <= {top}). Print {say}.",
                            f"Given an integer {v} on one line ({low} <= {v} <= {top}), "
                            f"print {say}."))
    return Instance("Loop to n", statement, f"{v} = int(input())\n{body}",
                    draw_inputs(rng, lambda r: f"{r.randint(low, top)}\n"), "medium")


PARSES = {
    "clock": ("a time as HH:MM (24-hour clock). Print the number of minutes since midnight.",
              "h, m = map(int, input().split(':'))\nprint(h * 60 + m)\n",
              lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}\n"),
    "plus": ("an expression a+b (two non-negative integers, no spaces). Print its value.",
             "a, b = map(int, input().split('+'))\nprint(a + b)\n",
             lambda r: f"{r.randint(0, 500)}+{r.randint(0, 500)}\n"),
    "times": ("an expression a*b (two non-negative integers, no spaces). Print its value.",
              "a, b = map(int, input().split('*'))\nprint(a * b)\n",
              lambda r: f"{r.randint(0, 50)}*{r.randint(0, 50)}\n"),
    "key": ("a pair name=value. Print the name.",
            "name, value = input().split('=')\nprint(name)\n",
            lambda r: f"{word(r)}={r.randint(0, 999)}\n"),
    "value": ("a pair name=value, where value is an integer. Print the value plus 1.",
              "name, value = input().split('=')\nprint(int(value) + 1)\n",
              lambda r: f"{word(r)}={r.randint(0, 999)}\n"),
    **{part: (f"a date as YYYY-MM-DD. Print the {part} as a number without leading zeros.",
              f"y, m, d = input().split('-')\nprint(int({part[0]}))\n",
              lambda r: f"{r.randint(1990, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}\n")
       for part in ("year", "month", "day")},
}


@family("parse_line", "stdin", tuple(PARSES))
def parse_line(rng, key):
    (name,) = key
    say, solution, draw = PARSES[name]
    opener = rng.choice(("Read one line holding", "The input is one line with"))
    return Instance("Parse a Line", f"{opener} {say}", solution, draw_inputs(rng, draw), "medium")


FAMILIES = (int_arith, two_ints, string_op, list_reduce, count_if, list_map, yes_no, loop_n,
            parse_line)
