"""LiveCodeBench problem rows: parsing, round trips, the restricted unpickler."""

import base64
import json
import os
import pickle
import zlib

import pytest

from vpd_jax.feedback import (Problem, ProblemFormatError, TestCase,
                              load_problems, parse_problem_row)
from vpd_jax.feedback.problems import encode_private_tests, write_problems


def _problem(**overrides):
    fields = dict(
        question_id="abc001_a", question_title="Sum", question_content="Add.",
        starter_code="", platform="atcoder", difficulty="easy",
        contest_date="2024-05-01T00:00:00",
        public_tests=[TestCase("1 2\n", "3\n", "stdin")],
        private_tests=[TestCase("5 5\n", "10\n", "stdin")],
        func_name=None, metadata={})
    fields.update(overrides)
    return Problem(**fields)


def _lcb_row():
    """A row shaped like LiveCodeBench's code_generation_lite (functional)."""
    private = [{"input": "[3,3]\n6", "output": "[0, 1]",
                "testtype": "functional"}]
    # LiveCodeBench: base64(zlib(pickle(json string))).
    blob = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(private))))
    return {
        "question_title": "two-sum", "question_content": "Find two indices.",
        "platform": "leetcode", "question_id": "1", "contest_id": "weekly-1",
        "contest_date": "2024-06-01T00:00:00",
        "starter_code": "class Solution:\n    def twoSum(self, nums: List[int],"
                        " target: int) -> List[int]:\n        ",
        "difficulty": "easy",
        "public_test_cases": json.dumps([{"input": "[2,7,11,15]\n9",
                                          "output": "[0, 1]",
                                          "testtype": "functional"}]),
        "private_test_cases": blob.decode(),
        "metadata": json.dumps({"func_name": "twoSum"}),
    }


def test_lcb_row_with_pickled_private_tests():
    problem = parse_problem_row(_lcb_row())
    assert problem.question_id == "1"
    assert problem.func_name == "twoSum"
    assert problem.public_tests == [TestCase("[2,7,11,15]\n9", "[0, 1]",
                                             "functional")]
    assert problem.private_tests == [TestCase("[3,3]\n6", "[0, 1]",
                                              "functional")]
    assert problem.all_tests == problem.public_tests + problem.private_tests


def test_round_trip_through_row_and_file(tmp_path):
    problem = _problem(func_name=None, metadata={"source": "ours"})
    assert parse_problem_row(problem.to_row()) == problem
    row = problem.to_row()
    assert isinstance(row["public_test_cases"], str)
    assert isinstance(row["metadata"], str)
    row["private_test_cases"] = encode_private_tests(problem.private_tests)
    assert parse_problem_row(row) == problem
    path = tmp_path / "p.jsonl"
    write_problems(path, [problem, _problem(question_id="x2")])
    loaded = load_problems(path)
    assert [p.question_id for p in loaded] == ["abc001_a", "x2"]
    assert loaded[0] == problem


def _pickled(obj):
    return base64.b64encode(zlib.compress(pickle.dumps(obj))).decode()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("payload", [_Evil(), ["a list"], 12])
def test_unpickler_admits_only_a_string(payload):
    row = _problem().to_row()
    row["private_test_cases"] = _pickled(payload)
    with pytest.raises(ProblemFormatError, match="private_test_cases"):
        parse_problem_row(row, source="lcb.jsonl", row_index=7)


def test_unpickler_refuses_globals_by_name():
    row = _problem().to_row()
    row["private_test_cases"] = _pickled(_Evil())
    with pytest.raises(ProblemFormatError, match="posix.system|not allowed"):
        parse_problem_row(row)


@pytest.mark.parametrize("field,value,message", [
    ("public_test_cases", "[{", "invalid JSON"),
    ("public_test_cases", json.dumps([{"input": "1"}]), r"\[0\]\.output"),
    ("public_test_cases", json.dumps([{"input": "1", "output": "2",
                                       "testtype": "file"}]), "testtype"),
    ("public_test_cases", json.dumps([{"input": "[1,2]\n", "output": "3",
                                       "testtype": "functional"}]),
     r"\[0\]\.input: line 2"),
    ("public_test_cases", json.dumps([{"input": "[1]", "output": "[",
                                       "testtype": "functional"}]),
     r"\[0\]\.output"),
    ("private_test_cases", "!!not base64!!", "private_test_cases"),
    ("metadata", "{bad", "metadata"),
    ("question_title", 5, "question_title"),
])
def test_malformed_rows_name_source_row_and_field(field, value, message):
    row = _problem().to_row()
    row[field] = value
    with pytest.raises(ProblemFormatError) as error:
        parse_problem_row(row, source="data/lcb.jsonl", row_index=41)
    text = str(error.value)
    assert "data/lcb.jsonl" in text and "row 41" in text and field in text
    assert pytest.importorskip("re").search(message, text)


def test_missing_field_and_functional_without_func_name():
    row = _problem().to_row()
    del row["question_id"]
    with pytest.raises(ProblemFormatError, match="'question_id': missing"):
        parse_problem_row(row)
    row = _lcb_row()
    row["metadata"] = "{}"
    with pytest.raises(ProblemFormatError, match="func_name"):
        parse_problem_row(row)


def test_load_problems_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(_problem().to_row())
    path.write_text(good + "\n\n" + "{not json\n")
    with pytest.raises(ProblemFormatError, match=r"bad.jsonl: row 2"):
        load_problems(path)
