"""LiveCodeBench's output comparison, and the decoding of functional results.

stdin tests (LiveCodeBench `grade_stdio`): strip the whole output, split on
newlines, strip each line; the line counts must match; each pair of lines is
equal, or else both split on whitespace into tokens that all parse as
`Decimal` and the two lists are equal (so "1.0" matches "1", "1e2" matches
"100"; a token that does not parse fails the line).

functional tests (LiveCodeBench `grade_call_based`): the expected value is
`json.loads(output)`; a returned tuple becomes a list; then Python `==`.
Here the program's value arrives as a tagged encoding of builtin values
(see _harness.py) and is rebuilt in this process, so `==` runs between
plain builtins only and never on an object the program defined.
"""

from __future__ import annotations

import decimal
import json
from typing import Any


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[decimal.Decimal] | None:
    try:
        return [decimal.Decimal(token) for token in line.split()]
    except (decimal.InvalidOperation, ValueError):
        return None


def compare_stdout(actual: str, expected: str) -> tuple[bool, str]:
    """(passed, reason) under LiveCodeBench's rules; reason is '' on success."""
    got, want = _lines(actual), _lines(expected)
    if len(got) != len(want):
        return False, (f"expected {len(want)} line(s) of output, got "
                       f"{len(got)}")
    for index, (g, w) in enumerate(zip(got, want)):
        if g == w:
            continue
        g_num, w_num = _decimals(g), _decimals(w)
        try:
            same = g_num is not None and w_num is not None and g_num == w_num
        except decimal.InvalidOperation:  # signalling NaN compared
            same = False
        if not same:
            return False, f"line {index + 1} differs"
    return True, ""


class UndecodableValue(ValueError):
    """The harness's encoding of a return value is malformed."""


def decode_value(node: Any, depth: int = 0) -> Any:
    """Rebuilds a builtin value from the harness's tagged encoding."""
    if depth > 250 or not isinstance(node, list) or not node:
        raise UndecodableValue("malformed return value")
    tag = node[0]
    try:
        if tag == "none":
            return None
        payload = node[1]
        if tag == "bool":
            return payload == "1"
        if tag == "int":
            return int(payload, 16)
        if tag == "float":
            return float.fromhex(payload)
        if tag == "str":
            if not isinstance(payload, str):
                raise UndecodableValue("malformed string")
            return payload
        if tag in ("list", "tuple", "set", "frozenset"):
            items = [decode_value(v, depth + 1) for v in payload]
            return {"list": list, "tuple": tuple, "set": set,
                    "frozenset": frozenset}[tag](items)
        if tag == "dict":
            return {decode_value(k, depth + 1): decode_value(v, depth + 1)
                    for k, v in payload}
    except (IndexError, TypeError, ValueError) as e:
        raise UndecodableValue(f"malformed return value: {e}") from None
    raise UndecodableValue(f"unknown tag {tag!r}")


def compare_functional(encoded: Any, expected_output: str) -> tuple[bool, Any]:
    """(passed, decoded value) as LiveCodeBench: tuple -> list, then ==."""
    value = decode_value(encoded)
    if isinstance(value, tuple):
        value = list(value)
    expected = json.loads(expected_output)
    try:
        return bool(value == expected), value
    except RecursionError:
        return False, value


def parse_args(test_input: str) -> list:
    """Functional arguments: one JSON value per line (LiveCodeBench)."""
    return [json.loads(line) for line in test_input.split("\n")]
