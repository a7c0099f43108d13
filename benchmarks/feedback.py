"""Grading throughput and latency, against a naive baseline in the same run.

    python benchmarks/feedback.py [--solutions 200] [--tests 5] [--workers N]

Workload: `--solutions` completions, each on a problem with `--tests` tests
(public 2, the rest private), a fixed mix of verdicts: mostly accepted, some
wrong answers and runtime errors failing midway, compile errors, no code,
functional (LeetCode-style) problems, and a few time-limit hits.

Compared, on the same workload and the same machine:
  naive     one `subprocess.run([python, "-c", header + code])` per test,
            sequential, no isolation (LiveCodeBench's header prepended, the
            same comparison and early stop as ours);
  pool/MODE our sandbox (bwrap and/or fallback) in an in-process pool of
            `--workers` (default: cores);
  server    the same through `start_server` + FeedbackClient (auto mode).

Reported: tests/s (tests actually run; both stop at a solution's first
failure), solutions/s, p50/p99 of per-solution latency (its own grading
time, queueing excluded), and the per-test overhead of each isolation mode:
sequential wall time per test of a trivial program, minus a bare
`python -I -S -c pass` start.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vpd_jax.feedback import Limits, Problem, TestCase, start_server  # noqa: E402
from vpd_jax.feedback import compare, header  # noqa: E402
from vpd_jax.feedback.extract import extract_code  # noqa: E402
from vpd_jax.feedback.bwrap import become_subreaper  # noqa: E402
from vpd_jax.feedback.pool import GradingPool, default_workers  # noqa: E402
from vpd_jax.feedback.sandbox import Sandbox, bwrap_available, interpreter  # noqa: E402

LIMITS = Limits(time_s=1.0, wall_s=3.0)

SUM_OK = "import sys\nnums = list(map(int, sys.stdin.read().split()))\nprint(sum(nums))"
SUM_WRONG_BIG = ("import sys\nnums = list(map(int, sys.stdin.read().split()))\n"
                 "print(sum(nums) if len(nums) < 4 else 0)")
SUM_CRASH_BIG = ("import sys\nnums = list(map(int, sys.stdin.read().split()))\n"
                 "assert len(nums) < 5\nprint(sum(nums))")
FUNC_OK = ("class Solution:\n    def total(self, nums: List[int]) -> int:\n"
           "        return sum(nums)")
SLOW = "while True:\n    pass"


def _problems(n_tests: int) -> tuple[Problem, Problem]:
    stdin_tests = [TestCase(" ".join(str(j) for j in range(i + 2)) + "\n",
                            f"{sum(range(i + 2))}\n", "stdin")
                   for i in range(n_tests)]
    func_tests = [TestCase(json.dumps(list(range(i + 2))),
                           json.dumps(sum(range(i + 2))), "functional")
                  for i in range(n_tests)]
    stdin = Problem("sum", "", "", "", "atcoder", "easy", "",
                    stdin_tests[:2], stdin_tests[2:], None, {})
    func = Problem("total", "", "", "", "leetcode", "easy", "",
                   func_tests[:2], func_tests[2:], "total",
                   {"func_name": "total"})
    return stdin, func


def workload(n: int, n_tests: int) -> list[tuple[Problem, str]]:
    """A fixed mix of verdicts, in a fixed order."""
    stdin, func = _problems(n_tests)
    mix = ([(stdin, SUM_OK)] * 11 + [(func, FUNC_OK)] * 3
           + [(stdin, SUM_WRONG_BIG)] * 2 + [(stdin, SUM_CRASH_BIG)] * 2
           + [(stdin, "print(")] + [(stdin, "no code at all")])
    items = []
    for i in range(n):
        if i % 50 == 49:
            items.append((stdin, f"```python\n{SLOW}\n```"))
            continue
        problem, code = mix[i % len(mix)]
        items.append((problem, f"Solution:\n```python\n{code}\n```"))
    return items


def _naive_grade(problem: Problem, completion: str) -> tuple[str, int]:
    """(verdict, tests run): the unisolated grader many RL repos use."""
    code = extract_code(completion)
    if code is None:
        return "no_code", 0
    try:
        compile(code, "solution.py", "exec")
    except SyntaxError:
        return "compile_error", 0
    source = header.header_source() + code
    ran = 0
    for test in problem.all_tests:
        ran += 1
        stdin = test.input
        program = source
        if test.testtype == "functional":
            stdin = ""
            program += (f"\nimport json as _j\n_a = [_j.loads(l) for l in "
                        f"{test.input!r}.split('\\n')]\n"
                        f"print(_j.dumps(Solution().{problem.func_name}(*_a)))")
        try:
            out = subprocess.run([sys.executable, "-c", program], input=stdin,
                                 capture_output=True, text=True,
                                 timeout=LIMITS.wall_limit_s)
        except subprocess.TimeoutExpired:
            return "time_limit_exceeded", ran
        if out.returncode != 0:
            return "runtime_error", ran
        if test.testtype == "functional":
            ok = json.loads(out.stdout or "null") == json.loads(test.output)
        else:
            ok = compare.compare_stdout(out.stdout, test.output)[0]
        if not ok:
            return "wrong_answer", ran
    return "accepted", ran


def _tests_run(result: dict) -> int:
    if result["verdict"] in ("no_code", "compile_error"):
        return 0
    return result["tests_passed"] + (0 if result["passed"] else 1)


def _summary(name, wall, latencies, tests, verdicts) -> dict:
    latencies = sorted(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return {"name": name, "wall_s": round(wall, 2),
            "tests_per_s": round(tests / wall, 1),
            "solutions_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "tests_run": tests,
            "verdicts": dict(sorted(verdicts.items()))}


def _count(verdicts, v):
    verdicts[v] = verdicts.get(v, 0) + 1


def run_naive(items) -> dict:
    start, latencies, tests, verdicts = time.perf_counter(), [], 0, {}
    for problem, completion in items:
        t = time.perf_counter()
        verdict, ran = _naive_grade(problem, completion)
        latencies.append(time.perf_counter() - t)
        tests += ran
        _count(verdicts, verdict)
    return _summary("naive (sequential, no isolation)",
                    time.perf_counter() - start, latencies, tests, verdicts)


def run_pool(items, mode: str, workers: int) -> dict:
    pool = GradingPool(workers, Sandbox(mode, LIMITS))
    latencies, lock = [], threading.Lock()
    original = pool._grade_one

    def timed(problem, completion, limits):  # service time, no queueing
        t = time.perf_counter()
        result = original(problem, completion, limits)
        with lock:
            latencies.append(time.perf_counter() - t)
        return result

    pool._grade_one = timed
    start = time.perf_counter()
    results = pool.grade_many(items, LIMITS)
    wall = time.perf_counter() - start
    pool.close()
    verdicts = {}
    for r in results:
        _count(verdicts, r["verdict"])
    return _summary(f"pool/{mode} ({workers} workers)", wall, latencies,
                    sum(_tests_run(r) for r in results), verdicts)


def run_server(items, workers: int, batch: int = 10) -> dict:
    latencies, results = [], [None] * len(items)
    with start_server(workers=workers) as handle:
        client = handle.client()
        start = time.perf_counter()
        chunks = [list(range(i, min(i + batch, len(items))))
                  for i in range(0, len(items), batch)]

        def send(chunk):
            t = time.perf_counter()
            answer = client.grade_batch([items[i] for i in chunk], LIMITS)
            elapsed = time.perf_counter() - t
            for i, r in zip(chunk, answer):
                results[i] = r
            latencies.extend([elapsed / len(chunk)] * len(chunk))

        threads = []
        for group in range(workers):  # one client thread per worker
            mine = chunks[group::workers]
            thread = threading.Thread(target=lambda m=mine: [send(c) for c in m])
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        mode = client.health()["sandbox"]
    verdicts = {}
    for r in results:
        _count(verdicts, r["verdict"])
    out = _summary(f"server/{mode} ({workers} workers, batches of {batch})",
                   wall, latencies, sum(_tests_run(r) for r in results),
                   verdicts)
    out["note"] = "latency: request time / batch size"
    return out


def per_test_overhead(modes, repeats: int = 30) -> dict:
    """Sequential ms per test of a trivial program, and over a bare start."""
    def timeit(fn):
        fn()  # warm caches
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t) / repeats * 1000

    python = interpreter()
    rows = {"bare python -I -S -c pass": timeit(lambda: subprocess.run(
        [python, "-I", "-S", "-c", "pass"], check=True))}
    rows["naive python -c header+code"] = timeit(lambda: subprocess.run(
        [sys.executable, "-c", header.header_source() + "print(1)"],
        check=True, capture_output=True))
    for mode in modes:
        sandbox = Sandbox(mode, LIMITS)
        # On a grading thread of its own, as in the server's pool (it joins
        # its slot's pids cgroup once, where bwrap runs as root).
        with concurrent.futures.ThreadPoolExecutor(
                1, initializer=lambda s=sandbox: s.enter_slot(0)) as thread:
            rows[f"sandbox {mode}"] = thread.submit(timeit, lambda s=sandbox: s.run(
                "print(1)", mode="stdin", stdin="1\n")).result()
    floor = rows["bare python -I -S -c pass"]
    return {name: {"ms_per_test": round(ms, 1),
                   "overhead_ms": round(ms - floor, 1)}
            for name, ms in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solutions", type=int, default=200)
    parser.add_argument("--tests", type=int, default=5)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--modes", default="auto",
                        help="comma list of bwrap,fallback (auto: all that run)")
    parser.add_argument("--json", default=None, help="also write results here")
    args = parser.parse_args()
    become_subreaper()  # a grading process, as the server is
    modes = (["bwrap", "fallback"] if args.modes == "auto"
             else args.modes.split(","))
    if "bwrap" in modes and not bwrap_available():
        print("bubblewrap does not run here: skipping mode bwrap")
        modes.remove("bwrap")
    items = workload(args.solutions, args.tests)
    print(f"{args.solutions} solutions x {args.tests} tests, "
          f"{args.workers} workers, {os.cpu_count()} cores, limits {LIMITS}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    report = {"overhead": per_test_overhead(modes)}
    runs = [run_naive(items)]
    runs += [run_pool(items, mode, args.workers) for mode in modes]
    runs.append(run_server(items, args.workers))
    report["runs"] = runs
    report["load_average_end"] = os.getloadavg()[0]
    base = runs[0]["tests_per_s"]
    print(f"\n{'run':<48}{'tests/s':>9}{'sol/s':>8}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'x naive':>9}")
    for r in runs:
        print(f"{r['name']:<48}{r['tests_per_s']:>9}{r['solutions_per_s']:>8}"
              f"{r['p50_ms']:>9}{r['p99_ms']:>9}"
              f"{r['tests_per_s'] / base:>9.2f}")
    print(f"(server latency: request time / batch size; load average "
          f"{report['load_average_end']:.1f} at the end: other work on the "
          f"host slows every row alike)")
    print("\nverdicts:", json.dumps(runs[0]["verdicts"]))
    for r in runs[1:]:
        if r["verdicts"] != runs[0]["verdicts"]:
            print(f"  {r['name']}: {json.dumps(r['verdicts'])}")
    print(f"\n{'per-test cost (sequential, trivial program)':<48}"
          f"{'ms/test':>9}{'over bare':>10}")
    for name, row in report["overhead"].items():
        print(f"{name:<48}{row['ms_per_test']:>9}{row['overhead_ms']:>10}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
