"""LiveCodeBench problems: the dataclasses, JSONL parsing and writing.

A problem row follows LiveCodeBench's `code_generation_lite` schema
(DESIGN.md section 4). Its test lists are JSON strings; `private_test_cases`
may instead be base64(zlib(pickle(json string))), the form LiveCodeBench
ships to keep hidden tests out of web crawls. That pickle is decoded by a
restricted unpickler that refuses every global, so a crafted row can build
strings and nothing else: `pickle.loads` on downloaded data would run code.

Every error names the source file, the row and the field, so a broken
dataset is fixed at the right line instead of debugged from a traceback.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import pickle
import zlib
from typing import Any

TESTTYPES = ("stdin", "functional")
# Decompressed private tests above this size are refused, so a zlib bomb in
# a row costs an error rather than the host's memory. LiveCodeBench's
# largest rows decompress to a few tens of MB.
MAX_DECOMPRESSED_BYTES = 1 << 30

_REQUIRED_FIELDS = ("question_id", "question_content", "public_test_cases")
_TEXT_FIELDS = ("question_title", "question_content", "starter_code",
                "platform", "difficulty", "contest_date")


class ProblemFormatError(ValueError):
    """A problem row that does not follow the LiveCodeBench schema."""


@dataclasses.dataclass
class TestCase:
    """One test: stdin text and expected stdout, or JSON args and JSON result."""
    __test__ = False  # not a pytest test class, despite its name

    input: str
    output: str
    testtype: str  # "stdin" or "functional"

    def to_json(self) -> dict[str, str]:
        return {"input": self.input, "output": self.output,
                "testtype": self.testtype}


@dataclasses.dataclass
class Problem:
    """A code-generation problem; public tests give feedback, private ones reward."""
    question_id: str
    question_title: str
    question_content: str
    starter_code: str
    platform: str
    difficulty: str
    contest_date: str
    public_tests: list[TestCase]
    private_tests: list[TestCase]
    func_name: str | None
    metadata: dict

    @property
    def all_tests(self) -> list[TestCase]:
        """Public tests first, then private ones: LiveCodeBench's order."""
        return list(self.public_tests) + list(self.private_tests)

    def to_row(self) -> dict[str, str]:
        """The LiveCodeBench JSONL row (test lists and metadata as JSON strings)."""
        metadata = dict(self.metadata)
        if self.func_name is not None:
            metadata["func_name"] = self.func_name
        return {
            "question_id": self.question_id,
            "question_title": self.question_title,
            "question_content": self.question_content,
            "starter_code": self.starter_code,
            "platform": self.platform,
            "difficulty": self.difficulty,
            "contest_date": self.contest_date,
            "public_test_cases": json.dumps([t.to_json() for t in self.public_tests]),
            "private_test_cases": json.dumps([t.to_json() for t in self.private_tests]),
            "metadata": json.dumps(metadata),
        }


class _StringsOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global: strings, numbers and containers only."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"global {module}.{name} is not allowed in private test cases")


def _decode_pickled_tests(text: str) -> str:
    """base64(zlib(pickle(json string))) -> the JSON string inside."""
    raw = base64.b64decode(text.encode("ascii"), validate=False)
    inflater = zlib.decompressobj()
    data = inflater.decompress(raw, MAX_DECOMPRESSED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(
            f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
    value = _StringsOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(value, str):
        raise ValueError(f"pickle holds a {type(value).__name__}, expected str")
    return value


def encode_private_tests(tests: list[TestCase]) -> str:
    """The compressed form LiveCodeBench uses (for fixtures and round trips)."""
    payload = json.dumps([t.to_json() for t in tests])
    return base64.b64encode(zlib.compress(pickle.dumps(payload))).decode("ascii")


def _where(source: str, row_index: int, field: str) -> str:
    return f"{source}: row {row_index}: field {field!r}"


def _parse_tests(value: Any, *, source: str, row_index: int, field: str,
                 allow_pickle: bool) -> list[TestCase]:
    where = _where(source, row_index, field)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if allow_pickle and text and text[0] not in "[{":
            try:
                text = _decode_pickled_tests(text)
            except (ValueError, binascii.Error, zlib.error, pickle.UnpicklingError,
                    EOFError, UnicodeError) as e:
                raise ProblemFormatError(
                    f"{where}: neither a JSON list nor base64(zlib(pickle)) "
                    f"tests: {e}") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProblemFormatError(f"{where}: invalid JSON: {e}") from None
    if not isinstance(value, list):
        raise ProblemFormatError(
            f"{where}: expected a list of tests, got {type(value).__name__}")
    tests = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ProblemFormatError(
                f"{where}[{i}]: expected an object, got {type(item).__name__}")
        for key in ("input", "output", "testtype"):
            if not isinstance(item.get(key), str):
                raise ProblemFormatError(
                    f"{where}[{i}].{key}: missing or not a string")
        if item["testtype"] not in TESTTYPES:
            raise ProblemFormatError(
                f"{where}[{i}].testtype: {item['testtype']!r} is not one of "
                f"{TESTTYPES}")
        if item["testtype"] == "functional":
            _check_functional(item, f"{where}[{i}]")
        tests.append(TestCase(item["input"], item["output"], item["testtype"]))
    return tests


def _check_functional(item: dict, where: str) -> None:
    """Functional tests are JSON: one argument per input line, one output.

    Checked here so a bad row fails at load with its row and field, not in
    the middle of a training step's grading.
    """
    for n, line in enumerate(item["input"].split("\n")):
        try:
            json.loads(line)
        except json.JSONDecodeError as e:
            raise ProblemFormatError(
                f"{where}.input: line {n + 1} is not a JSON value: {e}") from None
    try:
        json.loads(item["output"])
    except json.JSONDecodeError as e:
        raise ProblemFormatError(
            f"{where}.output: not a JSON value: {e}") from None


def _parse_metadata(value: Any, *, source: str, row_index: int) -> dict:
    where = _where(source, row_index, "metadata")
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ProblemFormatError(f"{where}: invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ProblemFormatError(
            f"{where}: expected an object, got {type(value).__name__}")
    return value


def parse_problem_row(row: dict, source: str = "<row>",
                      row_index: int = 0) -> Problem:
    """Builds a Problem from one LiveCodeBench row; errors name source/row/field."""
    if not isinstance(row, dict):
        raise ProblemFormatError(
            f"{source}: row {row_index}: expected a JSON object, got "
            f"{type(row).__name__}")
    for field in _REQUIRED_FIELDS:
        if field not in row:
            raise ProblemFormatError(f"{_where(source, row_index, field)}: missing")
    text = {}
    for field in _TEXT_FIELDS:
        value = row.get(field, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ProblemFormatError(
                f"{_where(source, row_index, field)}: expected a string, got "
                f"{type(value).__name__}")
        text[field] = value
    question_id = row["question_id"]
    if isinstance(question_id, int) and not isinstance(question_id, bool):
        question_id = str(question_id)
    if not isinstance(question_id, str) or not question_id:
        raise ProblemFormatError(
            f"{_where(source, row_index, 'question_id')}: expected a non-empty "
            f"string")
    public = _parse_tests(row["public_test_cases"], source=source,
                          row_index=row_index, field="public_test_cases",
                          allow_pickle=False)
    private = _parse_tests(row.get("private_test_cases"), source=source,
                           row_index=row_index, field="private_test_cases",
                           allow_pickle=True)
    metadata = _parse_metadata(row.get("metadata"), source=source,
                               row_index=row_index)
    func_name = metadata.get("func_name") or None
    if func_name is not None and not (isinstance(func_name, str)
                                      and func_name.isidentifier()):
        raise ProblemFormatError(
            f"{_where(source, row_index, 'metadata')}: func_name {func_name!r} "
            f"is not a Python identifier")
    kinds = {t.testtype for t in public + private}
    if func_name is None and "functional" in kinds:
        raise ProblemFormatError(
            f"{_where(source, row_index, 'metadata')}: functional tests need "
            f"metadata.func_name")
    if not public and not private:
        raise ProblemFormatError(
            f"{_where(source, row_index, 'public_test_cases')}: the problem has "
            f"no tests at all")
    return Problem(question_id=question_id, public_tests=public,
                   private_tests=private, func_name=func_name,
                   metadata=metadata, **text)


def iter_jsonl(path, error: type[ValueError] = ProblemFormatError):
    """(row index, parsed row) of a JSONL file, blank lines skipped; a line
    that is not JSON raises `error` naming the file and the row."""
    source = str(path)
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            if not line.strip():
                continue
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{source}: row {index}: invalid JSON: {e}") from None


def load_problems(path) -> list[Problem]:
    """Reads a LiveCodeBench JSONL file (blank lines skipped)."""
    return [parse_problem_row(row, source=str(path), row_index=index) for index, row in iter_jsonl(path)]


def write_problems(path, problems: list[Problem]) -> None:
    """Writes problems as LiveCodeBench JSONL rows, one per line."""
    with open(path, "w", encoding="utf-8") as f:
        for problem in problems:
            f.write(json.dumps(problem.to_row()) + "\n")
