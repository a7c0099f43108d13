"""A bounded pool of grading workers, shared by the server and the CLI.

Each worker thread owns a slot number for its whole life; the sandbox uses
it for the fallback's private uid (and, for bwrap as root, the slot's pids
cgroup, which the thread joins once), so two programs never share a uid (and
the cleanup after one test never touches the other's processes). Threads
suffice: a worker spends its time waiting on a child process.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import sys
import threading

from vpd_jax.feedback.grading import error_row, grade
from vpd_jax.feedback.limits import Limits
from vpd_jax.feedback.problems import Problem
from vpd_jax.feedback.sandbox import Sandbox


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class GradingPool:
    """grade() over many (problem, completion) pairs, at most `workers` at once.

    A grading that raises (an error of ours) becomes that one solution's
    grading-error row, logged: a batch always gets one row per solution.
    """

    def __init__(self, workers: int | None = None,
                 sandbox: Sandbox | None = None):
        self.workers = workers or default_workers()
        self.sandbox = sandbox or Sandbox()
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(self.workers):
            self._slots.put(slot)
        self._local = threading.local()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="grader",
            initializer=self._take_slot)
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _take_slot(self) -> None:
        """Each worker thread keeps one slot for life (at most `workers`
        threads), so the sandbox can tie per-slot state to it once."""
        self._local.slot = self._slots.get()
        self.sandbox.enter_slot(self._local.slot)

    def _grade_one(self, problem: Problem, completion: str,
                   limits: Limits | None) -> dict:
        slot = self._local.slot
        with self._lock:
            self._in_flight += 1
        try:
            return grade(problem, completion, limits=limits,
                         sandbox=self.sandbox, slot=slot)
        except Exception as e:  # ours, not the program's: this row only
            print(f"vpd_jax.feedback: grading {problem.question_id!r} "
                  f"failed: {e!r}", file=sys.stderr, flush=True)
            return error_row(problem.question_id, len(problem.all_tests),
                             f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                self._in_flight -= 1

    def submit(self, problem: Problem, completion: str,
               limits: Limits | None = None) -> concurrent.futures.Future:
        return self._executor.submit(self._grade_one, problem, completion,
                                     limits)

    def grade_many(self, items: list[tuple[Problem, str]],
                   limits: Limits | None = None) -> list[dict]:
        """Results in the order of `items`."""
        futures = [self.submit(p, c, limits) for p, c in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Waits for submitted gradings, then stops the workers."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> "GradingPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
