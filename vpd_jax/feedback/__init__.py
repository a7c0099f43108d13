"""Feedback for code rollouts: sandboxed LiveCodeBench grading and critiques.

Nothing in this package imports JAX: the grading server is a separate, small
process whose children are fresh interpreters, so a sandboxed program never
inherits a large parent's memory map or accelerator handles.
"""

from vpd_jax.feedback.problems import (Problem, ProblemFormatError, TestCase,
                                       load_problems, parse_problem_row)

__all__ = ["Problem", "ProblemFormatError", "TestCase", "load_problems",
           "parse_problem_row"]
