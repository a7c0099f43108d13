"""A small, bounded fuzz of the grading server's HTTP protocol on loopback:
malformed request lines and headers, bodies that are not the schema,
oversized and torn payloads, random mutations of a valid body, and a client
that stalls mid-body. Every request gets an answer (never a 500 and never a
dropped connection for a well-formed HTTP request), and the server keeps
grading."""

import json
import random
import select
import socket
import threading
import time

import pytest

from vpd_jax.feedback import Problem, TestCase, server as server_lib
from vpd_jax.feedback.pool import GradingPool
from vpd_jax.feedback.sandbox import Sandbox

ADD = Problem("add", "", "", "", "atcoder", "easy", "",
              [TestCase("1 2\n", "3\n", "stdin")],
              [TestCase("10 20\n", "30\n", "stdin")], None, {})
VALID = {"items": [{"problem": ADD.to_row(), "completion": "no code"},
                   {"problem": ADD.to_row(), "completion": "just words"}]}


@pytest.fixture(scope="module")
def address(request):
    # In-process, so the stall timeout can be short.
    saved = server_lib._Handler.timeout, server_lib._Handler.read_deadline_s
    server_lib._Handler.timeout = 1.0
    server_lib._Handler.read_deadline_s = 2.0
    pool = GradingPool(1, Sandbox("fallback"))
    httpd = server_lib.FeedbackHTTPServer(("127.0.0.1", 0), pool)
    thread = threading.Thread(target=httpd.serve_forever,
                              kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()
    pool.close()
    thread.join()
    server_lib._Handler.timeout, server_lib._Handler.read_deadline_s = saved


def exchange(address, raw: bytes, timeout=10.0) -> tuple[int | None, bytes]:
    """Sends raw bytes, half-closes, returns (status or None, body)."""
    with socket.create_connection(address, timeout=timeout) as s:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading it all
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/"):
        return None, data
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def post(address, body: bytes, length: str | None = None):
    length = str(len(body)) if length is None else length
    return exchange(address, b"POST /grade_batch HTTP/1.0\r\nContent-Length: "
                    + length.encode() + b"\r\n\r\n" + body)


def check_answer(status, body, n_items=None):
    assert status in (200, 400), (status, body[:300])
    payload = json.loads(body)
    if status == 200:
        assert isinstance(payload["results"], list)
        if n_items is not None:
            assert len(payload["results"]) == n_items
    else:
        assert payload["error"]


MALFORMED_BODIES = [
    b"", b"{", b"[]", b"null", b"\xff\xfe\x00", b'{"items": 5}',
    b'{"items": [5]}', b'{"items": [{"problem": 5, "completion": "x"}]}',
    b'{"items": [{"problem": {}, "completion": 7}]}',
    b"[" * 200_000 + b"]" * 200_000,
    json.dumps({"items": [], "limits": {"time_s": "x"}}).encode(),
    json.dumps({"items": [], "limits": {"memory_mb": -1}}).encode(),
    json.dumps({"items": [], "limits": [1, 2]}).encode(),
    json.dumps({"items": [], "limits": {"wall_s": [], "time_s": True}}).encode(),
    json.dumps({"items": [{"problem": dict(
        ADD.to_row(), public_test_cases="[" * 100_000), "completion": "x"}]
    }).encode(),
    json.dumps({"items": [{"problem": dict(
        ADD.to_row(), private_test_cases="eJzLSM3JyQcABiwCFQ=="),
        "completion": "x"}]}).encode(),
    json.dumps({"items": [{"problem": dict(
        ADD.to_row(), metadata="{" * 50_000), "completion": "x"}]}).encode(),
]


def test_malformed_bodies_get_a_400(address):
    for body in MALFORMED_BODIES:
        status, answer = post(address, body)
        assert status == 400, (body[:80], status, answer[:300])
        assert json.loads(answer)["error"]


def test_bad_lengths_and_request_lines(address):
    for length in ("-5", "abc", str(1 << 40), "1e3"):
        status, _ = post(address, b"{}", length=length)
        assert status == 400, length
    for raw in (b"\x00\xff garbage\r\n\r\n", b"GET\r\n\r\n",
                b"POST /grade_batch HTTP/9.9\r\n\r\n",
                b"BREW /pot HTTP/1.0\r\n\r\n", b"GET /nope HTTP/1.0\r\n\r\n",
                b"POST /grade_batch HTTP/1.0\r\nX: " + b"y" * 70_000
                + b"\r\n\r\n"):
        status, answer = exchange(address, raw)
        if status is None:  # an HTTP/0.9-style line: answered without one
            assert b"Error code: " in answer, raw[:40]
        else:
            assert status in (400, 404, 431, 501, 505), raw[:40]


def test_random_mutations_of_a_valid_body(address):
    rng = random.Random(16)
    valid = json.dumps(VALID).encode()
    for _ in range(40):
        body = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(body))
            body[i] = rng.choice(b'{}[]",:\\0a\xff ')
        status, answer = post(address, bytes(body))
        check_answer(status, answer)


def test_torn_and_stalled_bodies(address):
    """A body shorter than its Content-Length (the client closes, or stalls)
    costs that connection only, within the handler's timeout."""
    body = json.dumps(VALID).encode()
    status, _ = post(address, body[:20], length=str(len(body)))
    assert status in (None, 400)
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(b"POST /grade_batch HTTP/1.0\r\nContent-Length: 100\r\n"
                  b"\r\n{\"items\"")
        started = time.monotonic()
        status, answer = post(address, body)  # served meanwhile
        check_answer(status, answer, n_items=2)
        s.settimeout(5)
        assert s.recv(1024) == b""  # the server gave up on it and closed
        assert time.monotonic() - started < 4


def test_server_still_grades_after_the_fuzz(address):
    status, answer = post(address, json.dumps(VALID).encode())
    check_answer(status, answer, n_items=2)
    assert [r["verdict"] for r in json.loads(answer)["results"]] == [
        "no_code", "no_code"]


def test_a_dripping_client_is_cut_at_the_read_deadline(address):
    """A byte every 0.3 s never trips the per-read timeout (1 s here); the
    whole request must still arrive within the read deadline (2 s here)."""
    request = b"POST /grade_batch HTTP/1.0\r\nContent-Length: 5000\r\n"
    with socket.create_connection(address, timeout=10) as s:
        started = time.monotonic()
        cut = False
        for i in range(40):  # 12 s of dripping at most
            try:
                s.sendall(request[i:i + 1] if i < len(request) else b"x")
            except OSError:
                cut = True
                break
            readable = select.select([s], [], [], 0.3)[0]
            if readable and s.recv(1024) == b"":
                cut = True
                break
        assert cut, "the server kept a dripping client past its deadline"
        assert time.monotonic() - started < 5
    status, answer = post(address, json.dumps(VALID).encode())
    check_answer(status, answer, n_items=2)
