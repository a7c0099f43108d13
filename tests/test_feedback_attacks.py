"""Issue 16's attacks on the grader, each as the model-written program (or
client) that mounts it, graded through the real sandbox, server or CLI, in
both sandbox modes where the attack applies. Each test names its row.

Row 1-2: a forged result record costs only that solution's verdict; a
failure of the grader or its server costs only the rows it hit.
Row 3: a hidden test's critique carries no program-controlled text.
Rows 4-11 (isolation) are in test_feedback_isolation.py.
"""

import json
import os
import resource
import subprocess
import sys

import pytest

from test_feedback_hostile import LIMITS, run_hostile, sandbox  # noqa: F401
from vpd_jax.feedback import Limits, Problem, TestCase, grade, start_server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD = Problem("add", "", "", "", "atcoder", "easy", "",
              [TestCase("1 2\n", "3\n", "stdin")],
              [TestCase("10 20\n", "30\n", "stdin")], None, {})
GOOD = "a, b = map(int, input().split())\nprint(a + b)"


def fenced(code):
    return f"```python\n{code}\n```"


def forge(payload_expr):
    """A program that finds its run's token in the harness's frames and
    writes its own result record, `payload_expr` (bytes, may use `token`)."""
    return ("import os, sys\n"
            "f, token = sys._getframe(), ''\n"
            "while f is not None:\n"
            "    job = f.f_locals.get('job')\n"
            "    if isinstance(job, dict) and 'token' in job:\n"
            "        token = job['token']\n"
            "    f = f.f_back\n"
            "head = '{\"token\": \"%s\", ' % token\n"
            f"os.write(int(sys.argv[2]), {payload_expr})\n"
            "os._exit(0)")


FORGED = {
    # 100,000-deep JSON: the grader's parser raised RecursionError.
    "deep": forge("(head + '\"status\": \"ok\", \"value\": ' + '[' * 100000"
                  " + ']' * 100000 + '}').encode()"),
    # A frame's source line that is not a string: the critique raised.
    "frame_types": forge("(head + '\"status\": \"exception\", \"exc_type\": "
                         "\"E\", \"exc_msg\": \"m\", \"frames\": "
                         "[[1, {\"a\": 1}, 3]]}').encode()"),
    "message_type": forge("(head + '\"status\": \"no_solution\", "
                          "\"exc_msg\": [1, 2]}').encode()"),
    "status_type": forge("(head + '\"status\": {\"ok\": 1}}').encode()"),
    "not_an_object": forge("b'[1, 2, 3]'"),
}


@pytest.mark.parametrize("how", sorted(FORGED))
def test_row1_forged_record_is_that_solutions_runtime_error(sandbox, how):
    result = run_hostile(sandbox, FORGED[how])
    assert result["verdict"] == "runtime_error", result["critique"]
    assert result["reward"] == 0.0


def test_row2_huge_forged_record_is_refused_unread(sandbox):
    # 40 MB of JSON lists: parsed, ~400 MB of Python objects in the grader.
    code = forge("(head + '\"status\": \"ok\", \"value\": [\"list\", [' + "
                 "'[\"none\"],' * 4_500_000 + '[\"none\"]]]}').encode()")
    limits = Limits(time_s=4.0, wall_s=10.0, memory_mb=1024,
                    output_bytes=64 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    result = run_hostile(sandbox, code, limits=limits, max_seconds=20)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                - before) / 1024
    assert result["verdict"] == "runtime_error"
    assert "cap" in result["critique"]
    assert grown_mb < 60, f"the grader grew by {grown_mb:.0f} MB"


def test_row2_large_honest_return_value_is_a_verdict(sandbox):
    """A real program returning more than the record cap gets wrong_answer
    from the harness's own check, not a refused record."""
    problem = Problem("big", "", "", "", "leetcode", "easy", "",
                      [TestCase("1", "[1]", "functional")], [], "f",
                      {"func_name": "f"})
    code = ("class Solution:\n    def f(self, n):\n"
            "        return ['x' * 1000] * 5000")
    result = grade(problem, fenced(code), limits=LIMITS, sandbox=sandbox)
    assert result["verdict"] == "wrong_answer"
    assert "bytes when encoded" in result["critique"]


def test_row1_server_answers_one_row_per_solution():
    items = [(ADD, fenced(GOOD)), (ADD, fenced(FORGED["deep"])),
             (ADD, fenced(FORGED["frame_types"])), (ADD, fenced(GOOD))]
    with start_server(workers=2) as handle:
        rows = handle.client(retries=0).grade_batch(items, limits=LIMITS)
    assert [r["verdict"] for r in rows] == [
        "accepted", "runtime_error", "runtime_error", "accepted"]


def test_row1_cli_grades_past_a_forged_record(tmp_path):
    from vpd_jax.feedback.problems import write_problems
    problems, solutions = tmp_path / "p.jsonl", tmp_path / "s.jsonl"
    write_problems(problems, [ADD])
    solutions.write_text("".join(
        json.dumps({"question_id": "add", "code": fenced(c)}) + "\n"
        for c in (FORGED["deep"], GOOD, FORGED["message_type"])))
    out = tmp_path / "v.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "vpd_jax.feedback", "grade", "--problems",
         str(problems), "--solutions", str(solutions), "--out", str(out),
         "--workers", "2", "--time-limit", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env=dict(os.environ, VPD_SANDBOX="fallback"))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["runtime_error", "accepted",
                                            "runtime_error"]


LEAKS = {
    # The exception's class name spells the hidden input.
    "class_name": ("a, b = map(int, input().split())\n"
                   "if a >= 10:\n"
                   "    raise type(f'Leak_{a}_{b}', (Exception,), {})()\n"
                   "print(a + b)"),
    # A function in the traceback renamed after the input.
    "function_name": ("def g():\n    raise ValueError\n"
                      "a, b = map(int, input().split())\n"
                      "if a >= 10:\n"
                      "    g.__code__ = g.__code__.replace("
                      "co_name=f'leak_{a}_{b}')\n"
                      "    g()\n"
                      "print(a + b)"),
    # The exit code and the signal number are the input.
    "exit_code": ("import os\na, b = map(int, input().split())\n"
                  "if a >= 10:\n    os._exit(b)\nprint(a + b)"),
    "signal": ("import os\na, b = map(int, input().split())\n"
               "if a >= 10:\n    os.kill(os.getpid(), a)\nprint(a + b)"),
    # The failing line's source and number, chosen by the input.
    "source_line": ("a, b = map(int, input().split())\n"
                    "if a >= 10:\n    assert 0, 'x'  # 10 20\nprint(a + b)"),
}


@pytest.mark.parametrize("how", sorted(LEAKS))
def test_row3_hidden_critique_has_no_program_text(sandbox, how):
    result = grade(ADD, fenced(LEAKS[how]), limits=LIMITS, sandbox=sandbox)
    assert result["verdict"] == "runtime_error", result["critique"]
    assert result["tests_passed"] == 1
    critique = result["critique"]
    assert "hidden test" in critique
    for secret in ("10", "20", "Leak", "leak", "SIG", "line"):
        assert secret not in critique, (secret, critique)


def test_row1_grader_failure_is_that_rows_grading_error(capfd):
    """An error of ours (here: a sandbox that cannot start) costs the rows
    it hit, each marked and logged, not the batch."""
    from vpd_jax.feedback import GRADING_ERROR
    from vpd_jax.feedback import sandbox as sandbox_lib
    from vpd_jax.feedback.pool import GradingPool
    broken = sandbox_lib.Sandbox("fallback")
    broken._python = "/no/such/python"
    with GradingPool(2, sandbox=broken) as pool:
        rows = pool.grade_many([(ADD, fenced(GOOD)), (ADD, "no code")],
                               limits=LIMITS)
    assert [r["verdict"] for r in rows] == [GRADING_ERROR, "no_code"]
    assert "FileNotFoundError" in rows[0]["error"] and rows[0]["reward"] == 0
    assert "grading 'add' failed" in capfd.readouterr().err


def test_row1_client_restarts_a_crashed_server_and_regrades(capfd):
    with start_server(workers=1) as handle:
        client = handle.client(retries=1, backoff_s=0.05)
        old_pid = handle.process.pid
        handle.process.kill()  # as the OOM killer would
        handle.process.wait()
        rows = client.grade_batch([(ADD, fenced(GOOD)), (ADD, "no code")],
                                  limits=LIMITS)
        assert [r["verdict"] for r in rows] == ["accepted", "no_code"]
        assert handle.process.pid != old_pid and handle.generation == 1
        assert client.health()["status"] == "ok"
    assert "restarting the grading server" in capfd.readouterr().err


def test_row1_unreachable_server_costs_rows_not_the_run(capfd):
    import socket
    from vpd_jax.feedback import GRADING_ERROR, FeedbackClient
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = FeedbackClient(f"127.0.0.1:{port}", timeout_s=2, retries=1,
                            backoff_s=0.05, chunk_size=1)
    rows = client.grade_batch([(ADD, fenced(GOOD)), (ADD, "x")])
    assert [r["verdict"] for r in rows] == [GRADING_ERROR] * 2
    assert [r["question_id"] for r in rows] == ["add", "add"]
    assert "2 tries" in rows[0]["error"]
    assert "marked as grading errors" in capfd.readouterr().err


def test_training_refuses_the_fallback_sandbox_unless_allowed(monkeypatch):
    """Row 4's guard: a run must opt in to the weaker sandbox, and is told
    why."""
    import types

    from configs import base
    from vpd_jax import components
    monkeypatch.setenv("VPD_SANDBOX", "fallback")
    cfg = base.get_config()
    cfg.feedback.workers = 1
    task = types.SimpleNamespace(kind="code")
    with pytest.raises(components.ConfigError,
                       match="fallback sandbox.*allow_weak_sandbox=True"):
        components.start_feedback(cfg, task)
    cfg.feedback.allow_weak_sandbox = True
    client, server = components.start_feedback(cfg, task)
    try:
        assert client.health()["sandbox"] == "fallback"
        assert client.server is server  # restartable by the client
    finally:
        server.close()
