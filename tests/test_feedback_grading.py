"""Grading a corpus of our own problems and programs, in both sandbox modes.

Each case names the verdict LiveCodeBench's rules give; the corpus covers
every verdict, the comparison rules, stdin quirks, functional problems, and
what critiques may and may not quote.
"""

import json

import pytest

from vpd_jax.feedback import VERDICTS, Limits, Problem, TestCase, grade
from vpd_jax.feedback import sandbox as sandbox_lib

MODES = ("bwrap", "fallback")


@pytest.fixture(scope="module", params=MODES)
def sandbox(request):
    if request.param == "bwrap" and not sandbox_lib.bwrap_available():
        pytest.skip("bubblewrap does not run on this machine")
    return sandbox_lib.Sandbox(request.param)


def stdin_problem(qid, public, private=()):
    return Problem(qid, qid, "", "", "atcoder", "easy", "2024-01-01",
                   [TestCase(i, o, "stdin") for i, o in public],
                   [TestCase(i, o, "stdin") for i, o in private], None, {})


def functional_problem(qid, func_name, public, private=()):
    return Problem(qid, qid, "", "class Solution:\n    def f(self):\n",
                   "leetcode", "easy", "2024-01-01",
                   [TestCase(i, o, "functional") for i, o in public],
                   [TestCase(i, o, "functional") for i, o in private],
                   func_name, {"func_name": func_name})


ADD = stdin_problem("add", [("1 2\n", "3\n")],
                    [("10 20\n", "30\n"), ("-5 5\n", "0\n")])
HALF = stdin_problem("half", [("1\n", "0.5\n")])
COUNT = stdin_problem("count", [("3\n", "1\n2\n3\n")])
TWO_SUM = functional_problem(
    "two_sum", "twoSum", [("[2,7,11,15]\n9", "[0, 1]")],
    [("[3,2,4]\n6", "[1, 2]"), ("[3,3]\n6", "[0, 1]")])
IS_EVEN = functional_problem("is_even", "isEven", [("4", "true")],
                             [("7", "false")])

TWO_SUM_OK = """
class Solution:
    def twoSum(self, nums: List[int], target: int) -> List[int]:
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i
"""


def fenced(code):
    return f"Here is my solution.\n```python\n{code.strip()}\n```\n"


# (case id, problem, completion, verdict, tests_passed)
CORPUS = [
    ("plain", ADD, fenced("a, b = map(int, input().split())\nprint(a + b)"),
     "accepted", 3),
    ("trailing_space_and_blank_lines", ADD,
     fenced("a, b = map(int, input().split())\nprint(a + b, '  ')\nprint()"),
     "accepted", 3),
    ("numeric_tokens", HALF, fenced("print('0.500')"), "accepted", 1),
    ("numeric_exponent", HALF, fenced("print('5e-1')"), "accepted", 1),
    ("numeric_mismatch", HALF, fenced("print(0.51)"), "wrong_answer", 0),
    ("line_count", COUNT, fenced("print('1 2 3')"), "wrong_answer", 0),
    ("lines_ok", COUNT, fenced("n = int(input())\nfor i in range(n):\n"
                               "    print(i + 1, end='  \\n')"),
     "accepted", 1),
    ("stdin_buffer", ADD, fenced(
        "import sys\na, b = map(int, sys.stdin.buffer.read().split())\n"
        "sys.stdout.buffer.write(b'%d\\n' % (a + b))"), "accepted", 3),
    ("input_past_eof", ADD, fenced("a = input()\nb = input()\nprint(a)"),
     "runtime_error", 0),
    ("exit_before_output", ADD, fenced("import sys\nsys.exit(0)\nprint(3)"),
     "wrong_answer", 0),
    ("exit_after_output", ADD, fenced(
        "a, b = map(int, input().split())\nprint(a + b)\nexit(1)"),
     "accepted", 3),
    ("main_guard", ADD, fenced(
        "def main():\n    a, b = map(int, input().split())\n    print(a+b)\n"
        "if __name__ == '__main__':\n    main()"), "accepted", 3),
    ("several_blocks_last_wins", ADD,
     fenced("print(0)") + "Fixed:\n" + fenced(
         "a, b = map(int, input().split())\nprint(a + b)"), "accepted", 3),
    ("several_blocks_last_wrong", ADD,
     fenced("a, b = map(int, input().split())\nprint(a + b)") + "Or:\n"
     + fenced("print(0)"), "wrong_answer", 0),
    ("header_names", ADD, fenced(
        "a, b = map(int, input().split())\n"
        "print(sum(Counter([a, b]).elements()) + 0 * gcd(a, b))"),
     "accepted", 3),
    ("deep_recursion", ADD, fenced(
        "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\n"
        "a, b = map(int, input().split())\nprint(a + b + f(20000) - 20000)"),
     "accepted", 3),
    ("functional_with_typing_import", TWO_SUM,
     fenced("from typing import List\n" + TWO_SUM_OK), "accepted", 3),
    ("functional_without_import", TWO_SUM, fenced(TWO_SUM_OK), "accepted", 3),
    ("functional_tuple", TWO_SUM, fenced(TWO_SUM_OK.replace(
        "return [seen[target - x], i]", "return (seen[target - x], i)")),
     "accepted", 3),
    ("functional_bool", IS_EVEN, fenced(
        "class Solution:\n    def isEven(self, n: int) -> bool:\n"
        "        return n % 2 == 0"), "accepted", 2),
    ("functional_wrong", TWO_SUM, fenced(
        "class Solution:\n    def twoSum(self, nums, target):\n"
        "        return [1, 0]"), "wrong_answer", 0),
    ("functional_eq_always_true", TWO_SUM, fenced(
        "class Yes:\n    def __eq__(self, other):\n        return True\n"
        "class Solution:\n    def twoSum(self, nums, target):\n"
        "        return Yes()"), "wrong_answer", 0),
    ("functional_list_subclass_eq", TWO_SUM, fenced(
        "class L(list):\n    def __eq__(self, other):\n        return True\n"
        "class Solution:\n    def twoSum(self, nums, target):\n"
        "        return L([9])"), "wrong_answer", 0),
    ("functional_prints_fake_result", TWO_SUM, fenced(
        "class Solution:\n    def twoSum(self, nums, target):\n"
        "        print('[0, 1]')\n        return None"), "wrong_answer", 0),
    ("functional_no_solution_class", TWO_SUM, fenced(
        "def twoSum(nums, target):\n    return [0, 1]"), "compile_error", 0),
    ("functional_no_method", TWO_SUM, fenced(
        "class Solution:\n    def other(self):\n        pass"),
     "compile_error", 0),
    ("syntax_error", ADD, fenced("print(1"), "compile_error", 0),
    ("no_code", ADD, "I would add the numbers but cannot write code.",
     "no_code", 0),
    ("zero_division", ADD, fenced("a, b = map(int, input().split())\n"
                                  "print(a // (b - b))"), "runtime_error", 0),
    ("segfault", ADD, fenced("import ctypes\nctypes.string_at(0)"),
     "runtime_error", 0),
    ("infinite_loop", ADD, fenced("while True:\n    pass"),
     "time_limit_exceeded", 0),
    ("memory_hog", ADD, fenced("x = bytearray(8 << 30)"),
     "memory_limit_exceeded", 0),
    ("memory_hog_slow", ADD, fenced(
        "chunks = []\nwhile True:\n    chunks.append(bytes(64 << 20))"),
     "memory_limit_exceeded", 0),
    ("output_flood", ADD, fenced(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)"),
     "output_limit_exceeded", 0),
    ("fails_hidden_test_only", ADD, fenced(
        "a, b = map(int, input().split())\nprint(a + b if a < 10 else -1)"),
     "wrong_answer", 1),
    ("crashes_on_hidden_test_only", ADD, fenced(
        "a, b = map(int, input().split())\nassert a < 10, 'secret'\n"
        "print(a + b)"), "runtime_error", 1),
]

LIMITS = Limits(time_s=1.0, wall_s=4.0, memory_mb=512, output_bytes=1 << 20)


@pytest.mark.parametrize("name,problem,completion,verdict,passed",
                         CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_verdicts(sandbox, name, problem, completion, verdict,
                         passed):
    result = grade(problem, completion, limits=LIMITS, sandbox=sandbox)
    assert set(result) == {"question_id", "passed", "reward", "verdict",
                           "tests_passed", "tests_total", "critique"}
    assert result["verdict"] == verdict, result["critique"]
    assert result["tests_passed"] == passed
    assert result["tests_total"] == len(problem.all_tests)
    assert result["passed"] is (verdict == "accepted")
    assert result["reward"] == (1.0 if verdict == "accepted" else 0.0)
    assert result["question_id"] == problem.question_id
    assert 0 < len(result["critique"]) <= 2000


def test_corpus_covers_every_verdict():
    assert {case[3] for case in CORPUS} == set(VERDICTS)


def _critique(sandbox, name):
    case = next(c for c in CORPUS if c[0] == name)
    return grade(case[1], case[2], limits=LIMITS, sandbox=sandbox)["critique"]


def test_critique_of_wrong_answer_quotes_public_test(sandbox):
    text = _critique(sandbox, "numeric_mismatch")
    assert text.startswith("Wrong answer (0 of 1 tests passed).")
    assert "Input:\n1" in text and "Expected output:\n0.5" in text
    assert "Your output:\n0.51" in text


def test_critique_of_runtime_error_has_own_line_numbers(sandbox):
    text = _critique(sandbox, "zero_division")
    assert "ZeroDivisionError: integer division or modulo by zero" in text
    assert "line 2: print(a // (b - b))" in text
    assert "_harness" not in text  # the harness's frames are not shown


def test_critique_never_quotes_hidden_tests(sandbox):
    for name in ("fails_hidden_test_only", "crashes_on_hidden_test_only"):
        text = _critique(sandbox, name)
        assert "hidden test" in text
        assert "10 20" not in text and "30" not in text
        assert "differs" not in text and "Your output" not in text
    # Verdict and test number only: the exception type, message and lines
    # are the program's to choose, so it could spell the input there.
    text = _critique(sandbox, "crashes_on_hidden_test_only")
    assert text.startswith("Runtime error (1 of 3 tests passed).")
    assert "test 2, a hidden test" in text
    assert "AssertionError" not in text and "secret" not in text
    assert "line" not in text


def test_split_problem_rewards_on_private_tests_only(sandbox):
    """reward_tests="private" (SDPO's split): feedback tests write the
    critique, reward tests alone decide the reward."""
    split = stdin_problem("split", [("1 2\n", "3\n"), ("5 5\n", "10\n")],
                          [("10 20\n", "30\n"), ("-5 5\n", "0\n")])
    split.metadata["reward_tests"] = "private"
    fails_feedback_only = fenced("a, b = map(int, input().split())\nprint(a + b if a != 5 else 0)")
    g = grade(split, fails_feedback_only, sandbox=sandbox)
    assert g["passed"] and g["reward"] == 1.0 and g["verdict"] == "accepted"
    assert (g["tests_passed"], g["tests_total"]) == (2, 2)
    assert (g["feedback_tests_passed"], g["feedback_tests_total"]) == (1, 2)
    assert g["critique"].startswith("Wrong answer (1 of 2 tests passed).") and "Input:\n5 5" in g["critique"]
    # the same program under the plain rule fails (it must pass every test)
    plain = stdin_problem("plain", [("1 2\n", "3\n"), ("5 5\n", "10\n")], [("10 20\n", "30\n"), ("-5 5\n", "0\n")])
    plain = grade(plain, fails_feedback_only, sandbox=sandbox)
    assert not plain["passed"] and plain["tests_total"] == 4

    fails_reward_only = fenced("a, b = map(int, input().split())\nprint(a + b if a < 10 else 0)")
    g = grade(split, fails_reward_only, sandbox=sandbox)
    assert not g["passed"] and g["reward"] == 0.0 and g["verdict"] == "wrong_answer"
    assert (g["tests_passed"], g["feedback_tests_passed"]) == (0, 2)
    assert "hidden test" in g["critique"] and "10 20" not in g["critique"] and "30" not in g["critique"]


def test_hidden_input_echoed_by_the_program_is_withheld(sandbox):
    echo = {"exception": "a, b = map(int, input().split())\n"
                         "if a >= 10:\n    raise ValueError(f'got {a} {b}')\n"
                         "print(a + b)",
            "stderr": "import sys, os\nline = input()\n"
                      "if line.startswith('10'):\n"
                      "    sys.stderr.write(line)\n    sys.stderr.flush()\n"
                      "    os._exit(3)\n"
                      "a, b = map(int, line.split())\nprint(a + b)"}
    for how, code in echo.items():
        result = grade(ADD, fenced(code), limits=LIMITS, sandbox=sandbox)
        assert result["verdict"] == "runtime_error", how
        assert result["tests_passed"] == 1
        assert "10 20" not in result["critique"], how
        assert "got 10" not in result["critique"], how


def test_critique_names_the_limit(sandbox):
    assert "1 s of CPU time" in _critique(sandbox, "infinite_loop")
    assert "512 MiB" in _critique(sandbox, "memory_hog")
    assert "bytes of output" in _critique(sandbox, "output_flood")
    assert "SyntaxError" in _critique(sandbox, "syntax_error")
    assert "SIGSEGV" in _critique(sandbox, "segfault")


def test_long_fields_are_truncated(sandbox):
    big = stdin_problem("big", [("x" * 5000 + "\n", "y" * 5000 + "\n")])
    result = grade(big, fenced("print('z' * 5000)"), limits=LIMITS,
                   sandbox=sandbox)
    assert result["verdict"] == "wrong_answer"
    assert len(result["critique"]) < 1200
    assert "chars cut" in result["critique"]


def test_grading_the_same_program_twice_gives_the_same_critique(sandbox):
    """Each test runs in a fresh interpreter; with str hashing salted per
    process a set's order (so the output, critique and even verdict) would
    change from one grading to the next, and a seeded run would not repeat."""
    words = stdin_problem("words", [("x\n", "apple banana cherry date elder fig\n")])
    program = fenced("input()\nprint(*{'apple', 'banana', 'cherry', 'date', 'elder', 'fig'})")
    critiques = {grade(words, program, limits=LIMITS, sandbox=sandbox)["critique"]
                 for _ in range(3)}
    assert len(critiques) == 1, critiques  # 6! orders: three salted runs agree with p ~ 2e-6


def test_object_addresses_repeat_between_gradings(sandbox):
    """`print(map(...))` quotes an address in the critique; with address
    randomisation it differed at every grading, and so did the teacher's
    context of a seeded run."""
    program = fenced("print(map(int, input().split()), object())")
    critiques = {grade(ADD, program, limits=LIMITS, sandbox=sandbox)["critique"] for _ in range(3)}
    assert len(critiques) == 1, critiques
    assert "<map object at 0x" in critiques.pop()


def test_fixed_addresses_is_per_thread_and_restored():
    import ctypes
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    before, seen, go = libc.personality(0xFFFFFFFF), [], threading.Event()
    other = threading.Thread(target=lambda: (go.wait(), seen.append(libc.personality(0xFFFFFFFF))))
    other.start()  # a grading thread that exists already, as the server's pool does
    with sandbox_lib.fixed_addresses():
        assert libc.personality(0xFFFFFFFF) & 0x0040000
        go.set()
        other.join()
    assert seen == [before] and libc.personality(0xFFFFFFFF) == before


def test_program_cannot_import_the_harness_from_its_directory(sandbox):
    probe = fenced("try:\n    import _harness\n    print('imported')\n"
                   "except ImportError:\n    print('3')\n")
    result = grade(stdin_problem("probe", [("1 2\n", "3\n")]), probe, limits=LIMITS, sandbox=sandbox)
    assert result["verdict"] == "accepted", result["critique"]


def test_env_var_forces_fallback(monkeypatch):
    monkeypatch.setenv("VPD_SANDBOX", "fallback")
    assert sandbox_lib.detect_mode() == "fallback"
    monkeypatch.setenv("VPD_SANDBOX", "nonsense")
    with pytest.raises(ValueError, match="VPD_SANDBOX"):
        sandbox_lib.detect_mode()


def test_sandbox_that_cannot_start_is_an_error_not_a_verdict():
    if not sandbox_lib.bwrap_available():
        pytest.skip("bubblewrap does not run on this machine")
    broken = sandbox_lib.Sandbox("bwrap")
    broken._prefix = broken._prefix + ["--ro-bind", "/no/such/dir", "/x"]
    with pytest.raises(sandbox_lib.SandboxError, match="failed to start"):
        grade(ADD, CORPUS[0][2], limits=LIMITS, sandbox=broken)


def test_program_faking_a_sandbox_failure_gets_a_verdict(sandbox):
    fake = fenced("import os, sys\n"
                  "sys.stderr.write('bwrap: Creating new namespace failed')\n"
                  "sys.stderr.flush()\nos._exit(1)")
    result = grade(ADD, fake, limits=LIMITS, sandbox=sandbox)
    assert result["verdict"] == "runtime_error"
    assert "exited with code 1" in result["critique"]


UNPRIVILEGED_SCRIPT = """
import json
from vpd_jax.feedback import Limits, Problem, TestCase, grade
from vpd_jax.feedback.sandbox import Sandbox
ADD = Problem("add", "", "", "", "atcoder", "easy", "",
              [TestCase("1 2\\n", "3\\n", "stdin")], [], None, {{}})
fenced = lambda code: "```python\\n" + code + "\\n```"
sandbox = Sandbox("fallback")
codes = {{
    "ok": "a, b = map(int, input().split())\\nprint(a + b)",
    "threads": "import threading\\nout = []\\n"
               "t = threading.Thread(target=lambda: out.append(sum(map(int, "
               "input().split()))))\\nt.start(); t.join(); print(out[0])",
    "fork": "import os\\nos.fork()",
    "loop": "while True:\\n    pass",
}}
limits = Limits(time_s=1.0, wall_s=4.0, memory_mb=512)
print(json.dumps({{name: grade(ADD, fenced(code), limits=limits,
                              sandbox=sandbox)["verdict"]
                  for name, code in codes.items()}}))
"""


def test_unprivileged_fallback():
    """The fallback as an ordinary user: no uid switching, no NPROC."""
    import os
    import subprocess
    python = "/usr/bin/python3"
    if os.geteuid() != 0 or not os.access(python, os.X_OK):
        pytest.skip("needs root (to become an ordinary user) and a system "
                    "python that user can run")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = UNPRIVILEGED_SCRIPT.format()
    out = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, timeout=120,
        user=65534, group=65534, extra_groups=[], cwd="/tmp",
        env={"PYTHONPATH": repo, "PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    if out.returncode != 0 and "ModuleNotFoundError" in out.stderr:
        pytest.skip(f"system python lacks a module: {out.stderr[-200:]}")
    assert out.returncode == 0, out.stderr
    verdicts = json.loads(out.stdout.strip().splitlines()[-1])
    assert verdicts == {"ok": "accepted", "threads": "accepted",
                        "fork": "runtime_error",
                        "loop": "time_limit_exceeded"}
