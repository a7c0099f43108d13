"""The grading server, its client, start_server, and the grade CLI."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from vpd_jax.feedback import (FeedbackClient, FeedbackError, Limits, Problem,
                              TestCase, grade, start_server)
from vpd_jax.feedback.problems import encode_private_tests, write_problems

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD = Problem("add", "A+B", "Add two numbers.", "", "atcoder", "easy",
              "2024-01-01", [TestCase("1 2\n", "3\n", "stdin")],
              [TestCase("10 20\n", "30\n", "stdin")], None, {})
GOOD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
WRONG = "```python\nprint(0)\n```"
FAST = Limits(time_s=1.0, wall_s=3.0)


@pytest.fixture(scope="module")
def server():
    with start_server(workers=2) as handle:
        yield handle


def test_health_reports_isolation(server):
    health = server.client().health()
    assert health["status"] == "ok"
    assert health["sandbox"] in ("bwrap", "fallback")
    assert health["workers"] == 2
    assert health["isolation"]


def test_batch_results_follow_item_order(server):
    items = [(ADD, GOOD), (ADD, WRONG), (ADD, "no code here, sorry"),
             (ADD, "```python\nprint(1/0)\n```"), (ADD, GOOD)]
    results = server.client().grade_batch(items, limits=FAST)
    assert [r["verdict"] for r in results] == [
        "accepted", "wrong_answer", "no_code", "runtime_error", "accepted"]
    # Same dicts as the in-process grade().
    assert results[1] == grade(ADD, WRONG, limits=FAST)
    assert server.client().grade_batch([]) == []


def test_chunked_batch_keeps_order(server):
    client = server.client(chunk_size=3, max_in_flight=3)
    codes = [GOOD if i % 3 else WRONG for i in range(10)]
    problems = [Problem(f"c{i}", "", "", "", "atcoder", "easy", "",
                        ADD.public_tests, [], None, {}) for i in range(10)]
    results = client.grade_batch(list(zip(problems, codes)), limits=FAST)
    assert [r["question_id"] for r in results] == [f"c{i}" for i in range(10)]
    assert [r["passed"] for r in results] == [bool(i % 3) for i in range(10)]


def test_bad_request_names_item_and_field(server):
    client = server.client(retries=0)
    row = ADD.to_row()
    row["public_test_cases"] = "[{"
    payload = {"items": [{"problem": ADD.to_row(), "completion": GOOD},
                         {"problem": row, "completion": GOOD}]}
    with pytest.raises(FeedbackError, match=r"400.*row 1.*public_test_cases"):
        client._request("POST", "/grade_batch", payload)
    with pytest.raises(FeedbackError, match="400.*unknown limit"):
        client._request("POST", "/grade_batch",
                        {"items": [], "limits": {"bogus": 1}})
    with pytest.raises(FeedbackError, match="404"):
        client._request("GET", "/nope")


def test_server_survives_hostile_batch(server):
    hostile = ["```python\nwhile True:\n    pass\n```",
               "```python\nimport os\nwhile True:\n    try:\n        os.fork()"
               "\n    except Exception:\n        pass\n```",
               "```python\nimport sys\nwhile True:\n"
               "    sys.stdout.write('z' * 65536)\n```",
               "```python\nx = bytearray(1 << 40)\n```",
               "```python\nimport os, signal\n"
               "os.kill(os.getppid(), signal.SIGKILL)\n```"]
    results = server.client().grade_batch([(ADD, c) for c in hostile],
                                          limits=FAST)
    assert [r["verdict"] for r in results][:4] == [
        "time_limit_exceeded", "time_limit_exceeded",
        "output_limit_exceeded", "memory_limit_exceeded"]
    assert server.client().health()["status"] == "ok"
    assert server.client().grade_batch([(ADD, GOOD)])[0]["passed"]


def test_fallback_server_grades_concurrently():
    """The fallback mode under a server's concurrency: slots never mix."""
    env = dict(os.environ, VPD_SANDBOX="fallback")
    spawner = ("```python\nimport os, subprocess\n"
               "for f in (lambda: subprocess.Popen(['sleep', '300']),"
               " os.fork):\n"
               "    try:\n        f()\n    except Exception:\n"
               "        pass\n"
               "try:\n    open('/tmp/vpd-stray-' + str(os.getpid()), 'w')\n"
               "except OSError:\n    pass  # Landlock: its temp dir only\n"
               "a, b = map(int, input().split())\nprint(a + b)\n```")
    items = [(ADD, GOOD), (ADD, spawner), (ADD, WRONG),
             (ADD, "```python\nwhile True:\n    pass\n```")] * 3
    before = {n for n in os.listdir("/tmp") if n.startswith("vpd-stray-")}
    with start_server(workers=2, env=env) as handle:
        assert handle.client().health()["sandbox"] == "fallback"
        verdicts = [r["verdict"] for r in
                    handle.client().grade_batch(items, limits=FAST)]
    assert verdicts == ["accepted", "accepted", "wrong_answer",
                        "time_limit_exceeded"] * 3
    after = {n for n in os.listdir("/tmp") if n.startswith("vpd-stray-")}
    if os.geteuid() == 0:  # root: private uids, whose files are swept
        assert after == before


def test_client_retries_then_fails_on_dead_address():
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = FeedbackClient(f"127.0.0.1:{port}", timeout_s=2, retries=2,
                            backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(FeedbackError, match="3 tries"):
        client.health()
    assert time.monotonic() - started < 5


def _load(server, real_every):
    """2,000 gradings from 8 concurrent clients (25 per request); every
    `real_every`-th runs a program in the sandbox, the others are cheap
    (no code, compile errors) and load the HTTP path and the pool. Every
    grading must come back once, in order, with its own verdict."""
    def item(i):
        problem = Problem(f"q{i}", "", "", "", "atcoder", "easy", "",
                          ADD.public_tests, [], None, {})
        if i % real_every == 0:
            return problem, (GOOD if (i // real_every) % 2 == 0 else WRONG)
        return problem, ("just words" if i % 2 else "```python\nprint(\n```")

    def expected(i):
        if i % real_every == 0:
            return ("accepted" if (i // real_every) % 2 == 0
                    else "wrong_answer")
        return "no_code" if i % 2 else "compile_error"

    def client_job(c):
        client = server.client(timeout_s=300)
        mine = list(range(c, 2000, 8))
        got = []
        for start in range(0, len(mine), 25):
            batch = mine[start:start + 25]
            results = client.grade_batch([item(i) for i in batch])
            got += [(i, r["question_id"], r["verdict"])
                    for i, r in zip(batch, results)]
        return got

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = [a for part in pool.map(client_job, range(8)) for a in part]
    assert len(answers) == 2000
    assert sorted(i for i, _, _ in answers) == list(range(2000))
    for i, qid, verdict in answers:
        assert qid == f"q{i}" and verdict == expected(i)
    assert server.client().health()["in_flight"] == 0


def test_load_2000_gradings_from_8_clients(server):
    _load(server, real_every=25)


@pytest.mark.slow
def test_load_2000_real_gradings_from_8_clients(server):
    _load(server, real_every=1)  # every grading runs the sandbox


def test_graceful_shutdown_answers_requests_in_flight():
    handle = start_server(workers=1)
    slow = GOOD.replace("```python\n", "```python\nimport time\n"
                                         "time.sleep(0.5)\n")
    box = {}

    def send():
        box["results"] = handle.client().grade_batch([(ADD, slow)])

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 10
    while handle.client().health()["in_flight"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    handle.process.send_signal(signal.SIGTERM)
    sender.join(30)
    assert box["results"][0]["verdict"] == "accepted"
    assert handle.process.wait(30) == 0
    with pytest.raises(FeedbackError):
        FeedbackClient(handle.address, retries=0, timeout_s=2).health()
    handle.close()


def test_server_exits_when_its_parent_dies():
    script = ("import sys, os\n"
              f"sys.path.insert(0, {REPO!r})\n"
              "from vpd_jax.feedback import start_server\n"
              "h = start_server(workers=1)\n"
              "print(h.process.pid, flush=True)\n"
              "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, timeout=60)
    server_pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(server_pid, signal.SIGKILL)
    pytest.fail("server outlived its parent")


def test_no_jax_in_the_server_process():
    code = ("import sys\nimport vpd_jax.feedback, vpd_jax.feedback.server\n"
            "import vpd_jax.feedback.__main__\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jax', 'jaxlib', 'flax', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, cwd=REPO, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_grades_in_solution_order(tmp_path):
    problems = tmp_path / "problems.jsonl"
    write_problems(problems, [ADD])
    row = json.loads(problems.read_text())
    row["private_test_cases"] = encode_private_tests(ADD.private_tests)
    _write_jsonl(problems, [row])
    solutions = tmp_path / "solutions.jsonl"
    _write_jsonl(solutions, [{"question_id": "add", "code": WRONG},
                             {"question_id": "add", "code": GOOD},
                             {"question_id": "add", "code": "words only"}])
    out = tmp_path / "verdicts.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "vpd_jax.feedback", "grade", "--problems",
         str(problems), "--solutions", str(solutions), "--out", str(out),
         "--workers", "2", "--time-limit", "2"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["wrong_answer", "accepted",
                                            "no_code"]
    assert rows[1]["tests_total"] == 2 and rows[1]["reward"] == 1.0
    assert "1/3 accepted" in proc.stderr


def test_cli_names_bad_solution_row(tmp_path):
    problems = tmp_path / "problems.jsonl"
    write_problems(problems, [ADD])
    solutions = tmp_path / "solutions.jsonl"
    _write_jsonl(solutions, [{"question_id": "add", "code": GOOD},
                             {"question_id": "nope", "code": GOOD}])
    proc = subprocess.run(
        [sys.executable, "-m", "vpd_jax.feedback", "grade", "--problems",
         str(problems), "--solutions", str(solutions), "--out",
         str(tmp_path / "v.jsonl")],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "row 1" in proc.stderr and "question_id" in proc.stderr


@pytest.mark.slow
def test_cli_accepts_every_bundled_reference_solution(tmp_path):
    """Integration with the data package: its reference solutions pass."""
    bundled = os.path.join(REPO, "vpd_jax", "data", "bundled")
    parts = [os.path.join(bundled, n) for n in ("train.jsonl", "eval.jsonl")]
    solutions = os.path.join(bundled, "solutions.jsonl")
    if not all(os.path.exists(p) for p in parts + [solutions]):
        pytest.skip("bundled problem set not present")
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(open(p).read() for p in parts))
    out = tmp_path / "verdicts.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "vpd_jax.feedback", "grade", "--problems",
         str(problems), "--solutions", solutions, "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["verdict"] == "accepted" for r in rows), [
        (r["question_id"], r["critique"]) for r in rows if not r["passed"]]
