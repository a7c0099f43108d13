"""Task interface: user prompts, multiple-choice grading, dispatch of code."""

import pytest

from vpd_jax.data import Example, extract_choice, grade_choice, load_task
from vpd_jax.data.tasks import Task

FENCE = "`" * 3


def _mc(answer="C"):
    return Example(id="m1", question="What is the SI unit of force?", kind="choice",
                   choices=(("A", "Joule"), ("B", "Watt"), ("C", "Newton"), ("D", "Pascal")),
                   answer=answer)


def test_code_prompts_carry_statement_starter_and_format():
    task = load_task("vpd_problems")
    stdin = next(ex for ex in task.train if not ex.starter_code)
    text = task.user_prompt(stdin)
    assert text.startswith(stdin.question.rstrip())
    assert "standard input" in text and f"{FENCE}python" in text
    functional = next(ex for ex in task.train if ex.starter_code)
    text = task.user_prompt(functional)
    assert f"{FENCE}python\n{functional.starter_code.rstrip()}\n{FENCE}" in text
    assert f"def {functional.problem.func_name}(self" in text


def test_choice_prompt_lists_choices_and_answer_format():
    text = Task("t", "choice", [], []).user_prompt(_mc())
    assert "A. Joule\nB. Watt\nC. Newton\nD. Pascal" in text
    assert "<answer>" in text and "</answer>" in text


@pytest.mark.parametrize("completion, expected", [
    ("<answer>C</answer>", "C"),
    ("I think... <answer> c </answer>", "C"),
    ("<answer>(B)</answer>", "B"),
    ("<answer>D. Pascal</answer>", "D"),
    ("<ANSWER>A</ANSWER>", "A"),
    ("Format: <answer>A</answer>. So the answer is <answer>C</answer>", "C"),  # last tag
    ("The answer is C", None),
    ("<answer>Newton</answer>", "Newton"),  # well formed, not a label
])
def test_extract_choice(completion, expected):
    assert extract_choice(completion, ("A", "B", "C", "D")) == expected


def test_choice_grading_and_critiques_never_reveal_the_key():
    example = _mc(answer="C")
    right = grade_choice(example, "<answer>C</answer>")
    assert (right["reward"], right["passed"], right["verdict"]) == (1.0, True, "accepted")
    results = {
        "wrong_answer": grade_choice(example, "<answer>A</answer>"),
        "no_answer": grade_choice(example, "It is Newton."),
        "invalid_choice": grade_choice(example, "<answer>E</answer>"),
    }
    for verdict, result in results.items():
        assert result["verdict"] == verdict
        assert result["reward"] == 0.0 and result["passed"] is False
        critique = result["critique"]
        assert "Newton" not in critique and " C " not in critique + " " and "C." not in critique
    assert "valid" in results["wrong_answer"]["critique"]
    assert "incorrect" in results["wrong_answer"]["critique"]
    assert "format" in results["no_answer"]["critique"]


class _FakeClient:
    """Stands in for the feedback client: records what grade_batch gets."""

    def __init__(self):
        self.calls = []

    def grade_batch(self, pairs):
        self.calls.append(pairs)
        return [{"question_id": p.question_id, "passed": "right" in c,
                 "reward": float("right" in c), "verdict": "accepted" if "right" in c
                 else "wrong_answer", "critique": "", "tests_passed": 0, "tests_total": 6}
                for p, c in pairs]


def test_grade_sends_code_in_one_batch_and_keeps_order():
    task = load_task("vpd_problems")
    code = list(task.eval[:2])
    examples = [code[0], _mc("B"), code[1]]
    completions = ["right", "<answer>B</answer>", "nope"]
    client = _FakeClient()
    results = task.grade(examples, completions, client=client)
    assert len(client.calls) == 1
    assert [(p.question_id, c) for p, c in client.calls[0]] == [
        (code[0].id, "right"), (code[1].id, "nope")]
    assert [r["passed"] for r in results] == [True, True, False]
    for r in results:
        assert {"reward", "passed", "verdict", "critique"} <= set(r)
    with pytest.raises(ValueError, match="completions"):
        task.grade(examples, completions[:2], client=client)


def test_load_task_errors_are_clear():
    with pytest.raises(ValueError, match="unknown task 'lcb'"):
        load_task("lcb")
    with pytest.raises(TypeError, match="options"):
        load_task("vpd_problems", releas="v6")
    with pytest.raises(ValueError, match="release 'v9'"):
        load_task("livecodebench", data_dir="/nonexistent", release="v9")


def test_command_line_builds_and_summarizes(capsys):
    from vpd_jax.data.__main__ import main
    assert main(["vpd_problems", "use_tfds=false"]) == 0
    out = capsys.readouterr().out
    assert "vpd_problems train: 45 examples" in out and "'functional'" in out
    assert "first train prompt:" in out
