"""The critique text the teacher reads (DESIGN.md section 1, source `env`).

It says what went wrong in the words a programmer would want: the verdict,
then for the first failing test its input, the expected and the actual
output, or the exception with the program's own line numbers, or the limit
it hit. A hidden (private) test is never quoted: public tests give feedback,
private tests only give the reward, so the teacher cannot learn the answers
of the tests that decide it. On a hidden test the critique is the verdict
and the test's number alone: everything else the program controls
(exception type and message, traceback, exit code, output, stderr) and
could spell the hidden input with. Fields are cut to ~250 characters and
the whole text to ~2,000, keeping the teacher prompt short.
"""

from __future__ import annotations

import dataclasses

FIELD_CHARS = 250
TOTAL_CHARS = 2000
_LIMIT_VERDICTS = ("time_limit_exceeded", "memory_limit_exceeded",
                   "output_limit_exceeded")

VERDICT_TITLES = {
    "accepted": "Accepted",
    "wrong_answer": "Wrong answer",
    "runtime_error": "Runtime error",
    "time_limit_exceeded": "Time limit exceeded",
    "memory_limit_exceeded": "Memory limit exceeded",
    "output_limit_exceeded": "Output limit exceeded",
    "compile_error": "Compile error",
    "no_code": "No code",
}


@dataclasses.dataclass
class Failure:
    """The first failing test, as grading.py saw it."""
    verdict: str
    test_index: int  # 0-based over public + private tests
    hidden: bool
    test_input: str = ""
    expected: str = ""
    actual: str | None = None
    reason: str = ""  # e.g. "line 2 differs", "killed by SIGSEGV"
    exc_type: str = ""
    exc_msg: str = ""
    frames: list = dataclasses.field(default_factory=list)  # [line, func, src]
    limit: str = ""  # e.g. "6 s of CPU time"
    stderr_tail: str = ""  # last lines the program wrote to stderr


def truncate(text: str, limit: int = FIELD_CHARS) -> str:
    """Cuts the middle out of long text, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 20)
    head, tail = text[: keep * 2 // 3], text[-(keep // 3):]
    return f"{head}\n... [{len(text) - len(head) - len(tail)} chars cut] ...\n{tail}"


def _block(label: str, text: str) -> str:
    return f"{label}:\n{truncate(text)}"


def _exception(f: Failure) -> list[str]:
    lines = [f"{f.exc_type}: {truncate(f.exc_msg, 300)}".rstrip(": ")]
    if f.frames:
        lines.append("Traceback (innermost last), in your code:")
        for lineno, func, source in f.frames[-5:]:
            where = "" if func == "<module>" else f", in {func}"
            lines.append(f"  line {lineno}{where}: {truncate(source, 120)}")
    return lines


def critique_text(*, verdict: str, tests_passed: int, tests_total: int,
                  failure: Failure | None, compile_message: str = "") -> str:
    """One critique string, at most ~TOTAL_CHARS characters."""
    title = VERDICT_TITLES.get(verdict, verdict)
    if verdict == "accepted":
        return f"{title}: all {tests_total} tests passed."
    if verdict == "no_code":
        return (f"{title}: the response contains no Python code block "
                f"(```python ... ```) and is not a Python program itself.")
    head = f"{title} ({tests_passed} of {tests_total} tests passed)."
    parts = [head]
    if failure is None:  # compile_error before any test ran
        parts.append(truncate(compile_message, 600))
        return _cap("\n".join(parts))
    number = failure.test_index + 1
    if failure.hidden:
        # Verdict and index only: every other field (exception type, message,
        # traceback names and lines, exit code, signal, stderr, even which
        # line differs) is something the program chooses, so it could spell
        # out the hidden input there. The limit is the grader's own text.
        parts.append(f"Failed on test {number}, a hidden test: its input, "
                     f"expected output and the program's output and errors "
                     f"on it are not shown.")
        if failure.limit and verdict in _LIMIT_VERDICTS:
            parts.append(f"Limit: {failure.limit}.")
        return _cap("\n".join(parts))
    parts.append(f"Failed on test {number}.")
    parts.append(_block("Input", failure.test_input))
    if verdict == "wrong_answer":
        parts.append(_block("Expected output", failure.expected))
        if failure.actual is not None:
            parts.append(_block("Your output", failure.actual))
        if failure.reason:
            parts.append(f"({failure.reason})")
    elif verdict in ("runtime_error", "memory_limit_exceeded",
                     "compile_error"):
        if failure.exc_type:
            parts.extend(_exception(failure))
        elif failure.reason:
            parts.append(failure.reason)
            if failure.stderr_tail:
                parts.append(_block("Stderr (last lines)",
                                    failure.stderr_tail))
    if verdict in _LIMIT_VERDICTS and failure.limit:
        parts.append(f"Limit: {failure.limit}.")
    if (verdict in ("time_limit_exceeded", "output_limit_exceeded")
        and failure.reason):
        parts.append(failure.reason)
    return _cap("\n".join(parts))


def _cap(text: str) -> str:
    if len(text) <= TOTAL_CHARS:
        return text
    return text[: TOTAL_CHARS - 20] + "\n... [truncated]"
