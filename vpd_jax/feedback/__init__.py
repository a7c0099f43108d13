"""Feedback for code rollouts: sandboxed LiveCodeBench grading and critiques.

Nothing in this package imports JAX: the grading server is a separate, small
process whose children are fresh interpreters, so a sandboxed program never
inherits a large parent's memory map or accelerator handles.

    problems.py  LiveCodeBench rows -> Problem / TestCase
    extract.py   the program inside a completion
    sandbox.py   one test in a fresh, isolated interpreter (+ _harness.py)
    compare.py   LiveCodeBench's output comparison
    critique.py  the text the teacher reads
    grading.py   grade(problem, completion) -> verdict dict
    server.py    HTTP batch server; client.py: its client and start_server
"""

from vpd_jax.feedback.client import (FeedbackClient, FeedbackError,
                                     ServerHandle, start_server)
from vpd_jax.feedback.extract import extract_code
from vpd_jax.feedback.grading import VERDICTS, grade
from vpd_jax.feedback.limits import Limits
from vpd_jax.feedback.problems import (Problem, ProblemFormatError, TestCase,
                                       load_problems, parse_problem_row)

__all__ = ["FeedbackClient", "FeedbackError", "Limits", "Problem",
           "ProblemFormatError", "ServerHandle", "TestCase", "VERDICTS",
           "extract_code", "grade", "load_problems", "parse_problem_row",
           "start_server"]
