"""`python -m vpd_jax.feedback grade --problems P.jsonl --solutions S.jsonl
--out V.jsonl`: verdict rows in the order of the solutions.

Solutions JSONL rows are `{"question_id", "code"}`; `code` may be a raw
completion (the grader extracts the last fenced Python block). Grading runs
in this process's own pool of sandboxed workers; no server is needed.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time

from vpd_jax.feedback import bwrap
from vpd_jax.feedback.limits import Limits
from vpd_jax.feedback.pool import GradingPool
from vpd_jax.feedback.problems import ProblemFormatError, iter_jsonl, load_problems


def _load_solutions(path: str, known: set[str]) -> list[tuple[str, str]]:
    rows = []
    for index, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise ProblemFormatError(f"{path}: row {index}: expected an "
                                     f"object")
        qid, code = row.get("question_id"), row.get("code")
        if isinstance(qid, int) and not isinstance(qid, bool):
            qid = str(qid)
        if not isinstance(qid, str) or qid not in known:
            raise ProblemFormatError(
                f"{path}: row {index}: field 'question_id': {qid!r} is "
                f"not in the problems file")
        if not isinstance(code, str):
            raise ProblemFormatError(
                f"{path}: row {index}: field 'code': missing or not a "
                f"string")
        rows.append((qid, code))
    return rows


def grade_files(problems_path: str, solutions_path: str, out_path: str, *,
                workers: int | None = None,
                limits: Limits | None = None) -> collections.Counter:
    """Grades a solutions file; returns the count of each verdict."""
    problems = {p.question_id: p for p in load_problems(problems_path)}
    solutions = _load_solutions(solutions_path, set(problems))
    verdicts: collections.Counter = collections.Counter()
    with GradingPool(workers) as pool, open(out_path, "w",
                                             encoding="utf-8") as out:
        print(f"grading {len(solutions)} solutions with {pool.workers} "
              f"workers, sandbox: {pool.sandbox.describe()}",
              file=sys.stderr)
        futures = [pool.submit(problems[qid], code, limits)
                   for qid, code in solutions]
        for future in futures:  # in order: rows follow the solutions file
            result = future.result()
            verdicts[result["verdict"]] += 1
            out.write(json.dumps(result) + "\n")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vpd_jax.feedback")
    commands = parser.add_subparsers(dest="command", required=True)
    g = commands.add_parser("grade", help="grade a solutions JSONL file")
    g.add_argument("--problems", required=True, help="LiveCodeBench JSONL")
    g.add_argument("--solutions", required=True,
                   help="JSONL rows {question_id, code}")
    g.add_argument("--out", required=True, help="verdict JSONL to write")
    g.add_argument("--workers", type=int, default=None)
    g.add_argument("--time-limit", type=float, default=Limits.time_s,
                   help="CPU seconds per test")
    g.add_argument("--memory-mb", type=int, default=Limits.memory_mb)
    args = parser.parse_args(argv)
    limits = Limits(time_s=args.time_limit, memory_mb=args.memory_mb)
    bwrap.become_subreaper()  # this process only grades
    started = time.monotonic()
    try:
        verdicts = grade_files(args.problems, args.solutions, args.out,
                               workers=args.workers, limits=limits)
    except (ProblemFormatError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(verdicts.values())
    summary = ", ".join(f"{v} {n}" for v, n in verdicts.most_common())
    print(f"{verdicts['accepted']}/{total} accepted ({summary}) in "
          f"{time.monotonic() - started:.1f} s -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
