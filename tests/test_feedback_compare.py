"""LiveCodeBench's comparison rules, checked against a direct restatement."""

import decimal
import json

import pytest

from vpd_jax.feedback import compare


def lcb_reference(prediction: str, expected: str) -> bool:
    """LiveCodeBench's grade_stdio rules, restated independently."""
    pred = [x.strip() for x in prediction.strip().split("\n")]
    gold = [x.strip() for x in expected.strip().split("\n")]
    if len(pred) != len(gold):
        return False
    for p, g in zip(pred, gold):
        if p == g:
            continue
        try:
            pd = [decimal.Decimal(t) for t in p.split()]
            gd = [decimal.Decimal(t) for t in g.split()]
        except decimal.InvalidOperation:
            return False
        if pd != gd:
            return False
    return True


CASES = [
    ("3\n", "3", True),
    ("3   \n\n\n", "3", True),                 # trailing spaces, blank lines
    ("  1 2  \n 3\n", "1 2\n3", True),         # each line stripped
    ("1  2\n", "1 2", True),                    # token spacing, numerically
    ("1 2\n", "1  2", True),
    ("0.500\n", "0.5", True),                   # numeric tokens via Decimal
    ("5e-1\n", "0.5", True),
    ("1.0 2\n", "1 2.00", True),
    ("0.51\n", "0.5", False),
    ("3\n4\n", "3", False),                     # line count differs
    ("3\n", "3\n4", False),
    ("Yes\n", "YES", False),                    # case matters
    ("three\n", "3", False),                    # not a number
    ("1 2 3\n", "1 2", False),                  # token count differs
    ("", "", True),
    ("\r\n3\r\n", "3", True),                  # CR stripped with the line
    ("nan\n", "nan", True),                     # equal strings win first
    ("NaN\n", "nan", False),                    # Decimal NaN != NaN
]


@pytest.mark.parametrize("actual,expected,want", CASES)
def test_stdout_rules_match_livecodebench(actual, expected, want):
    assert lcb_reference(actual, expected) == want
    ok, reason = compare.compare_stdout(actual, expected)
    assert ok == want
    assert (reason == "") == want


def test_reason_names_the_problem():
    assert "line" in compare.compare_stdout("1\n2", "1")[1]
    assert compare.compare_stdout("1\n3", "1\n2")[1] == "line 2 differs"


def enc(value):
    """Mirror of the harness's tagged encoding (builtin types only)."""
    kind = type(value)
    if value is None:
        return ["none"]
    if kind is bool:
        return ["bool", "1" if value else "0"]
    if kind is int:
        return ["int", hex(value)]
    if kind is float:
        return ["float", value.hex()]
    if kind is str:
        return ["str", value]
    if kind is dict:
        return ["dict", [[enc(k), enc(v)] for k, v in value.items()]]
    return [kind.__name__, [enc(v) for v in value]]


@pytest.mark.parametrize("value,expected,want", [
    ([0, 1], "[0, 1]", True),
    ((0, 1), "[0, 1]", True),           # top-level tuple -> list
    ([(0, 1)], "[[0, 1]]", False),      # nested tuples stay tuples
    (True, "true", True),
    (1, "true", True),                  # Python ==: 1 == True
    (1.0, "1", True),
    (0.1 + 0.2, "0.3", False),          # no tolerance, as LiveCodeBench
    ("a", "\"a\"", True),
    ({"a": [1, None]}, "{\"a\": [1, null]}", True),
    (10 ** 100, str(10 ** 100), True),  # big ints survive the channel
    ({1, 2}, "[1, 2]", False),
    (None, "null", True),
])
def test_functional_values_compare_as_python_equality(value, expected, want):
    ok, decoded = compare.compare_functional(enc(value), expected)
    assert ok == want
    assert decoded == (list(value) if isinstance(value, tuple) else value)


def test_malformed_encoding_is_an_error_not_a_pass():
    for bad in [[], ["int"], ["int", "zz"], ["weird", 1], "x", ["list", 3]]:
        with pytest.raises(compare.UndecodableValue):
            compare.decode_value(bad)


def test_parse_args_one_json_value_per_line():
    assert compare.parse_args("[1,2]\n3\n\"x\"") == [[1, 2], 3, "x"]
    with pytest.raises(json.JSONDecodeError):
        compare.parse_args("[1,2]\n")
