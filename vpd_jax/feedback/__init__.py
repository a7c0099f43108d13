"""Feedback for code rollouts: sandboxed LiveCodeBench grading and critiques.

Nothing in this package imports JAX: the grading server is a separate, small
process whose children are fresh interpreters, so a sandboxed program never
inherits a large parent's memory map or accelerator handles.

    problems.py  LiveCodeBench rows -> Problem / TestCase
    extract.py   the program inside a completion
    grading.py   grade(problem, completion) -> verdict dict (LCB rules)
    compare.py   LiveCodeBench's output comparison
    critique.py  the text the teacher reads
    sandbox.py   one test in a fresh, isolated interpreter (_harness.py runs
                 inside); bwrap.py + seccomp.py + cgroup.py, or fallback.py
                 (+ seccomp.py, Landlock in the harness)
    record.py    the harness's result record, read as hostile input
    header.py    LiveCodeBench's import header, bound lazily
    limits.py    per-test limits;  pool.py: bounded worker pool
    server.py    HTTP batch server;  client.py: its client, start_server
    __main__.py  `python -m vpd_jax.feedback grade ...`
"""

from vpd_jax.feedback.client import (FeedbackClient, FeedbackError,
                                     ServerHandle, start_server)
from vpd_jax.feedback.extract import extract_code
from vpd_jax.feedback.grading import GRADING_ERROR, VERDICTS, error_row, grade
from vpd_jax.feedback.limits import Limits
from vpd_jax.feedback.problems import (Problem, ProblemFormatError, TestCase,
                                       load_problems, parse_problem_row)
from vpd_jax.feedback.sandbox import SandboxError

__all__ = ["FeedbackClient", "FeedbackError", "Limits", "Problem",
           "ProblemFormatError", "SandboxError", "ServerHandle", "TestCase",
           "GRADING_ERROR", "VERDICTS", "error_row",
           "extract_code", "grade", "load_problems", "parse_problem_row",
           "start_server"]
