"""Grades one completion against one problem, as LiveCodeBench does.

Tests run in LiveCodeBench's order (public, then private) and grading stops
at the first failure, as LiveCodeBench's runner does; `tests_passed` counts
the tests passed before it. Reward is 1.0 only when every test passes.
A problem whose metadata says reward_tests="private" (SDPO's 50/50 split,
`vpd_jax.data.livecodebench.split_feedback_tests`) is rewarded on its
private tests alone; its public tests only write the critique.

Verdict of one run, from the facts the sandbox reports (first match wins):
  wall limit hit, SIGXCPU, or CPU time over the limit -> time_limit_exceeded
  SIGKILL after running at least the CPU limit        -> time_limit_exceeded
    (RLIMIT_CPU's hard limit, for a program that ignores SIGXCPU; under
    bwrap the parent cannot see the program's own CPU time)
  SIGXFSZ or stdout at the size cap                    -> output_limit_exceeded
  MemoryError raised, or killed sooner, no result     -> memory_limit_exceeded
  SyntaxError at exec / no `Solution` or method       -> compile_error
  any other exception or signal, or no result         -> runtime_error
  output (stdin) or return value (functional) differs -> wrong_answer
"""

from __future__ import annotations

import json
import signal
import threading

from vpd_jax.feedback import compare
from vpd_jax.feedback.critique import Failure, critique_text
from vpd_jax.feedback.extract import extract_code
from vpd_jax.feedback.limits import Limits
from vpd_jax.feedback.problems import Problem
from vpd_jax.feedback.sandbox import RunResult, Sandbox

VERDICTS = ("accepted", "wrong_answer", "runtime_error",
            "time_limit_exceeded", "memory_limit_exceeded",
            "output_limit_exceeded", "compile_error", "no_code")
# Not a verdict on the program: the grader (or its server) failed on it.
# Such a row has reward 0.0 and an "error" field; see error_row.
GRADING_ERROR = "grading_error"

_DEFAULT_SANDBOX: Sandbox | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sandbox() -> Sandbox:
    """One Sandbox per process (mode detection probes bwrap once)."""
    global _DEFAULT_SANDBOX
    with _DEFAULT_LOCK:
        if _DEFAULT_SANDBOX is None:
            _DEFAULT_SANDBOX = Sandbox()
        return _DEFAULT_SANDBOX


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _program_compiles(code: str) -> str:
    """'' if the code compiles, else the message (compiled here, not run)."""
    try:
        compile(code, "solution.py", "exec", dont_inherit=True)
    except SyntaxError as e:
        line = f"line {e.lineno}: " if e.lineno else ""
        text = f"\n    {e.text.strip()}" if e.text and e.text.strip() else ""
        return f"{type(e).__name__}: {line}{e.msg}{text}"
    except (ValueError, OverflowError, MemoryError, RecursionError) as e:
        return f"{type(e).__name__}: {e}"
    return ""


def judge_run(run: RunResult, *, functional: bool, expected: str,
              limits: Limits) -> tuple[str, dict]:
    """(verdict, details for the critique) of one test run."""
    frame = run.frame or {}
    status = frame.get("status")
    cpu_killed = (run.signal == signal.SIGKILL and run.frame is None
                  and run.wall_s >= limits.time_s)
    if (run.timed_out or run.signal == signal.SIGXCPU or cpu_killed
            or run.cpu_s > limits.time_s):
        how = (f"no result within {limits.wall_limit_s:g} s of wall time (the "
               f"program may be sleeping or waiting for input)"
               if run.timed_out and run.cpu_s <= limits.time_s else "")
        return "time_limit_exceeded", {"limit": f"{limits.time_s:g} s of CPU "
                                                f"time per test", "reason": how}
    if run.signal == signal.SIGXFSZ or run.stdout_bytes >= limits.output_bytes:
        return "output_limit_exceeded", {
            "limit": f"{limits.output_bytes} bytes of output"}
    if status == "exception" and frame.get("exc_type") == "MemoryError":
        return "memory_limit_exceeded", _exc(frame) | {
            "limit": f"{limits.memory_mb} MiB of memory"}
    if run.record_error:  # the program wrote its own (forged) record
        return "runtime_error", {"reason": f"The program corrupted the "
                                           f"grader's result record "
                                           f"({run.record_error})."}
    if run.frame is None:
        if run.signal == signal.SIGKILL:
            return "memory_limit_exceeded", {
                "limit": f"{limits.memory_mb} MiB of memory",
                "reason": "the program was killed (out of memory)"}
        why = (f"killed by {_signal_name(run.signal)}" if run.signal else
               f"exited with code {run.exit_code} before finishing")
        tail = "\n".join(run.stderr_tail.strip().splitlines()[-3:])
        return "runtime_error", {"reason": f"The program {why}.",
                                 "stderr_tail": tail}
    if status == "compile_error":
        return "compile_error", _exc(frame)
    if status == "no_solution":
        return "compile_error", {"reason": frame.get("exc_msg", "")}
    if status == "exception":
        return "runtime_error", _exc(frame)
    if status == "bad_value":
        return "wrong_answer", {"actual": "<" + frame.get("exc_msg", "") + ">",
                                "reason": "the return value is not a plain "
                                          "list/dict/str/number/bool/None"}
    if status != "ok":
        return "runtime_error", {"reason": f"unexpected harness status {status!r}"}
    if functional:
        try:
            ok, value = compare.compare_functional(frame.get("value"), expected)
        except compare.UndecodableValue as e:
            return "runtime_error", {"reason": str(e)}
        if ok:
            return "accepted", {}
        return "wrong_answer", {"actual": json.dumps(value, default=repr)
                                if _jsonable(value) else repr(value)}
    actual = run.stdout.decode("utf-8", "replace")
    ok, reason = compare.compare_stdout(actual, expected)
    if ok:
        return "accepted", {}
    return "wrong_answer", {"actual": actual, "reason": reason}


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _exc(frame: dict) -> dict:  # fields typed by record.check
    return {"exc_type": frame.get("exc_type", ""),
            "exc_msg": frame.get("exc_msg", ""),
            "frames": frame.get("frames", [])}


def _result(problem: Problem, verdict: str, passed: int, total: int,
            critique: str) -> dict:
    ok = verdict == "accepted"
    return {"question_id": problem.question_id, "passed": ok,
            "reward": 1.0 if ok else 0.0, "verdict": verdict,
            "tests_passed": passed, "tests_total": total, "critique": critique}


def error_row(question_id: str, tests_total: int, error: str) -> dict:
    """The row of a solution the grader failed on (an error of ours: the
    sandbox did not start, the server crashed twice): reward 0.0, and
    `error` says what happened, so a trainer can count or mask such rows."""
    return {"question_id": question_id, "passed": False, "reward": 0.0,
            "verdict": GRADING_ERROR, "tests_passed": 0,
            "tests_total": tests_total, "error": error[:500],
            "critique": "Grading error: the grader failed on this solution "
                        "(not the program's fault); no verdict."}


def grade(problem: Problem, completion: str, *, limits: Limits | None = None,
          sandbox: Sandbox | None = None, slot: int = 0) -> dict:
    """Grades `completion` on `problem`: question_id, passed, reward, verdict,
    tests_passed, tests_total, critique."""
    if isinstance(limits, dict):
        limits = Limits.from_json(limits)
    sandbox = sandbox or default_sandbox()
    limits = limits or sandbox.limits
    tests = problem.all_tests
    total = len(tests)
    code = extract_code(completion)
    if code is None:
        return _result(problem, "no_code", 0, total, critique_text(
            verdict="no_code", tests_passed=0, tests_total=total, failure=None))
    message = _program_compiles(code)
    if message:
        return _result(problem, "compile_error", 0, total, critique_text(
            verdict="compile_error", tests_passed=0, tests_total=total,
            failure=None, compile_message=message))
    if problem.metadata.get("reward_tests") == "private":
        return _grade_split(problem, code, limits, sandbox, slot)
    n_public = len(problem.public_tests)
    index, failure = _first_failure(code, problem, tests, 0, n_public, limits, sandbox, slot)
    if failure is not None:
        return _result(problem, failure.verdict, index, total, critique_text(
            verdict=failure.verdict, tests_passed=index, tests_total=total,
            failure=failure))
    return _result(problem, "accepted", total, total, critique_text(
        verdict="accepted", tests_passed=total, tests_total=total,
        failure=None))


def _first_failure(code: str, problem: Problem, tests, offset: int, n_public: int,
                   limits: Limits, sandbox: Sandbox, slot: int) -> tuple[int, Failure | None]:
    """Runs tests in order up to the first failure: (tests passed, Failure
    or None). Test i is numbered offset + i and hidden from offset + i >= n_public."""
    for index, test in enumerate(tests):
        functional = test.testtype == "functional"
        run = sandbox.run(
            code, mode=test.testtype, slot=slot, limits=limits,
            stdin="" if functional else test.input,
            args=compare.parse_args(test.input) if functional else None,
            func_name=problem.func_name)
        verdict, details = judge_run(run, functional=functional,
                                     expected=test.output, limits=limits)
        if verdict != "accepted":
            return index, Failure(verdict=verdict, test_index=offset + index,
                                  hidden=offset + index >= n_public, test_input=test.input,
                                  expected=test.output, **details)
    return len(tests), None


def _grade_split(problem: Problem, code: str, limits: Limits, sandbox: Sandbox, slot: int) -> dict:
    """SDPO's split: public (feedback) tests write the critique, private
    (reward) tests alone decide the reward, so the teacher is never shown a
    failure on a test that scores the student.

    Both sets run, each up to its first failure. The verdict, reward and
    tests_passed / tests_total are those of the reward tests; the critique
    quotes the first failing feedback test, or, when every feedback test
    passes, says whether the hidden reward tests passed (never what they are).
    """
    public, private = list(problem.public_tests), list(problem.private_tests)
    n_fb, fb_fail = _first_failure(code, problem, public, 0, len(public), limits, sandbox, slot)
    n_rw, rw_fail = _first_failure(code, problem, private, len(public), len(public), limits, sandbox, slot)
    verdict = "accepted" if rw_fail is None else rw_fail.verdict
    if fb_fail is not None:
        critique = critique_text(verdict=fb_fail.verdict, tests_passed=n_fb, tests_total=len(public),
                                 failure=fb_fail)
    elif rw_fail is not None:
        critique = critique_text(verdict=rw_fail.verdict, tests_passed=len(public) + n_rw,
                                 tests_total=len(public) + len(private), failure=rw_fail)
    else:
        critique = critique_text(verdict="accepted", tests_passed=len(public) + len(private),
                                 tests_total=len(public) + len(private), failure=None)
    out = _result(problem, verdict, n_rw, len(private), critique)
    out["feedback_tests_passed"], out["feedback_tests_total"] = n_fb, len(public)
    return out
