"""TFDS builders: built from our fixture files, read back with tfds.data_source.

The fixtures (tests/fixtures/data/) are small files we wrote in the real
formats: LiveCodeBench rows (two of them with base64/zlib/pickled private
tests) and SciKnowEval rows in JSONL and JSON, some of which the filters
must drop. Builds run once per module into a temporary data_dir.
"""

import json
import pathlib
import shutil
import sys

import pytest

from vpd_jax import data
from vpd_jax.data import livecodebench, sciknoweval
from vpd_jax.feedback.problems import ProblemFormatError

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"
LCB = FIXTURES / "livecodebench"
SKE = FIXTURES / "sciknoweval"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def _ids(source):
    return sorted(ex.id for ex in source)


def test_vpd_problems_array_record_matches_bundled_jsonl(data_dir):
    via_tfds = data.load_task("vpd_problems", use_tfds=True, data_dir=str(data_dir))
    direct = data.load_task("vpd_problems")
    assert list((data_dir / "vpd_problems").glob("*/*.array_record*")), "no array_record files"
    for split in ("train", "eval"):
        a = {ex.id: ex.problem for ex in getattr(via_tfds, split)}
        b = {ex.id: ex.problem for ex in getattr(direct, split)}
        assert a == b  # every field and every test, through array_record and back
    # Reading needs no TensorFlow (it is not even installed in CI).
    assert "tensorflow" not in sys.modules


def test_livecodebench_release_files_and_pickled_private_tests(data_dir):
    task = data.load_task("livecodebench", data_dir=str(data_dir), manual_dir=str(LCB),
                          release="v2")
    # v2 = test.jsonl + test2.jsonl; the newest file is the test split.
    assert _ids(task.train) == ["fx_a1", "fx_a2", "fx_l1"]
    assert _ids(task.eval) == ["fx_a3", "fx_l2"]
    by_id = {ex.id: ex for ex in task.eval}
    echo = by_id["fx_a3"].problem
    assert [t.input for t in echo.private_tests] == ["x\n", "hey\n", "q\n", "zz\n"]
    assert echo.private_tests[1].output == "heyhey\n"
    last = by_id["fx_l2"]
    assert last.problem.func_name == "lastDigit"
    assert last.starter_code.startswith("class Solution:")
    assert [t.testtype for t in last.problem.all_tests] == ["functional"] * 3
    assert last.metadata["platform"] == "leetcode"


def test_livecodebench_v1_is_cut_by_date_and_custom_windows(data_dir):
    v1 = data.load_task("livecodebench", data_dir=str(data_dir), manual_dir=str(LCB),
                        release="v1")
    assert _ids(v1.train) == ["fx_a1", "fx_l1"]  # before 2024-01-01
    assert _ids(v1.eval) == ["fx_a2"]
    config = data.LiveCodeBenchConfig(
        name="fx_window", files=("test.jsonl", "test2.jsonl"),
        start_date="2023-07-01", end_date="2024-05-01", test_start_date="2024-03-01")
    window = data.load_task("livecodebench", data_dir=str(data_dir), manual_dir=str(LCB),
                            config=config)
    assert _ids(window.train) == ["fx_a2", "fx_l1"]  # fx_a1 is before the window
    assert _ids(window.eval) == ["fx_a3"]  # fx_l2 is after it


def test_split_feedback_tests_is_a_deterministic_half(data_dir):
    plain = data.load_task("livecodebench", data_dir=str(data_dir), manual_dir=str(LCB),
                           release="v2")
    cut = data.load_task("livecodebench", data_dir=str(data_dir), manual_dir=str(LCB),
                         release="v2", split_feedback_tests=True, seed=3)
    for before, after in zip(plain.train, cut.train):
        p, q = before.problem, after.problem
        half = len(p.private_tests) // 2
        assert q.public_tests[:len(p.public_tests)] == p.public_tests
        assert len(q.public_tests) == len(p.public_tests) + half
        assert len(q.private_tests) == len(p.private_tests) - half
        # Feedback and reward tests are disjoint and together are all tests.
        moved = q.public_tests[len(p.public_tests):]
        key = lambda t: (t.input, t.output)
        assert sorted(map(key, moved + q.private_tests)) == sorted(map(key, p.private_tests))
        assert q.metadata["reward_tests"] == "private" and "reward_tests" not in p.metadata  # graded on q's private half
    again = livecodebench.split_feedback_tests(plain.train[0].problem, seed=3)
    assert again == cut.train[0].problem
    # Evaluation grades every test: the cut never reaches the eval split.
    assert [ex.problem for ex in cut.eval] == [ex.problem for ex in plain.eval]


def test_eval_split_fails_a_program_that_fails_its_public_test(data_dir):
    """A program that special-cases the public input wrongly and is right on
    every private test: accepted under the training split's reward tests,
    wrong_answer on eval, as LiveCodeBench grades it."""
    from vpd_jax.feedback.grading import grade

    cut = data.load_task("livecodebench", data_dir=str(data_dir), manual_dir=str(LCB),
                         release="v2", split_feedback_tests=True, seed=3)
    echo = {ex.id: ex for ex in cut.eval}["fx_a3"].problem
    assert "reward_tests" not in echo.metadata
    code = "```python\ns = input().strip()\nprint('wrong' if s == 'ab' else s + s)\n```"
    verdict = grade(echo, code)
    assert verdict["verdict"] == "wrong_answer" and verdict["tests_total"] == len(echo.all_tests)
    as_train = livecodebench.split_feedback_tests(echo, seed=3)  # what the train split would grade
    assert grade(as_train, code)["verdict"] == "accepted"


def _write_lcb(tmp_path, mutate):
    folder = tmp_path / "lcb"
    folder.mkdir()
    rows = [json.loads(line) for line in (LCB / "test.jsonl").read_text().splitlines()]
    mutate(rows[1])
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize("mutate, field, message", [
    (lambda r: r.pop("question_content"), "question_content", "missing"),
    (lambda r: r.update(public_test_cases='[{"input": "1"'), "public_test_cases",
     "invalid JSON"),
    (lambda r: r.update(private_test_cases=json.dumps(
        [{"input": "1", "output": "1", "testtype": "interactive"}])),
     "private_test_cases", "interactive"),
    (lambda r: r.update(contest_date=""), "contest_date", "missing"),
])
def test_livecodebench_malformed_row_names_file_row_field(tmp_path, mutate, field, message):
    manual = _write_lcb(tmp_path, mutate)
    with pytest.raises(ValueError) as info:
        data.load_task("livecodebench", data_dir=str(tmp_path / "tfds"),
                       manual_dir=str(manual), release="v1")
    text = str(info.value)
    assert "test.jsonl" in text and "row 1" in text and repr(field) in text, text
    assert message in text, text


def test_livecodebench_missing_release_file_says_what_to_do(tmp_path):
    folder = tmp_path / "only_v1"
    folder.mkdir()
    shutil.copy(LCB / "test.jsonl", folder)
    with pytest.raises(FileNotFoundError, match="test2.jsonl.*manual_dir"):
        data.load_task("livecodebench", data_dir=str(tmp_path / "tfds"),
                       manual_dir=str(folder), release="v2")


def test_sciknoweval_filters_and_examples(data_dir):
    config = data.SciKnowEvalConfig(name="fx_half", test_percent=50)
    task = data.load_task("sciknoweval", data_dir=str(data_dir), manual_dir=str(SKE),
                          config=config)
    examples = list(task.train) + list(task.eval)
    # L3 multiple choice only: the L2 row and the open-ended row are dropped.
    assert len(examples) == 6
    assert task.train and task.eval
    by_question = {ex.question: ex for ex in examples}
    force = by_question["What is the SI unit of force?"]
    assert force.kind == "choice" and force.answer == "C"
    assert force.choices == (("A", "Joule"), ("B", "Watt"), ("C", "Newton"), ("D", "Pascal"))
    assert force.metadata["domain"] == "physics" and force.metadata["level"] == "L3"
    water = by_question["Is water a compound?"]
    assert water.choices == (("A", "Yes"), ("B", "No"))
    # The cut depends on the question only: a rebuild elsewhere agrees.
    test_ids = {ex.id for ex in task.eval}
    for ex in examples:
        bucket = int(__import__("hashlib").sha1(ex.id.encode()).hexdigest(), 16) % 100
        assert (bucket < 50) == (ex.id in test_ids)


def test_sciknoweval_domain_config(data_dir):
    task = data.load_task("sciknoweval", data_dir=str(data_dir), manual_dir=str(SKE),
                          config_name="l3_mcq_physics")
    examples = list(task.train) + list(task.eval)
    assert len(examples) == 3
    assert {ex.metadata["domain"] for ex in examples} == {"physics"}


@pytest.mark.parametrize("row, field", [
    ({"choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "A"}, "question"),
    ({"question": "q", "choices": {"label": ["A", "B"], "text": ["x"]}, "answerKey": "A"},
     "choices"),
    ({"question": "q", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "E"},
     "answerKey"),
])
def test_sciknoweval_malformed_row_names_file_row_field(row, field):
    row = {"type": "mcq-4-choices", "domain": "Physics", "details": {"level": "L3"}, **row}
    config = sciknoweval.SciKnowEvalConfig(name="t")
    with pytest.raises(data.DataFormatError) as info:
        sciknoweval.parse_row(row, "raw/phys.jsonl", 7, config)
    assert f"raw/phys.jsonl: row 7: field {field!r}" in str(info.value)


def test_problem_errors_are_value_errors():
    # Callers catch one family: both error types are ValueErrors.
    assert issubclass(ProblemFormatError, ValueError)
    assert issubclass(data.DataFormatError, ValueError)


def test_sciknoweval_domain_names_are_normalized():
    config = sciknoweval.SciKnowEvalConfig(name="t", domains=("Materials",))
    row = {"question": "q", "choices": {"label": ["A", "B"], "text": ["x", "y"]},
           "answerKey": "B", "type": "mcq-2-choices", "domain": "Material",
           "details": {"level": "L3", "task": "t1"}}
    record = sciknoweval.parse_row(row, "m.jsonl", 0, config)
    assert record["domain"] == "material" and record["answer_key"] == "B"
    assert sciknoweval.parse_row({**row, "domain": "Physics"}, "m.jsonl", 1, config) is None
