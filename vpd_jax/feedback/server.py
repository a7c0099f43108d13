"""The grading server: `python -m vpd_jax.feedback.server --host H --port P`.

A separate process, one per host, so the trainer's JAX process never forks
sandboxes and a hostile program can at worst hurt this small process. It is
stateless: every request carries its problems (LiveCodeBench rows), so any
client can send anything and a restarted server loses nothing.

  GET  /health       {"status": "ok"|"draining", "sandbox", "isolation",
                      "workers", "in_flight", "pid"}
  POST /grade_batch  {"items": [{"problem": row, "completion": str}, ...],
                      "limits": {...} | null}
                  -> {"results": [grade dict, ...]}   (same order as items)

Concurrency is bounded by one GradingPool (default: a worker per core)
shared by all requests. SIGTERM / SIGINT drain: new requests get 503, the
requests in flight finish and are answered, then the process exits 0. With
`--parent-pid`, the server also drains when that process dies, so a
trainer that crashes does not leave a grader behind.

On start it prints one line `READY host:port` on stdout (what start_server
waits for) and its isolation mode on stderr.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time

from vpd_jax.feedback import bwrap
from vpd_jax.feedback.limits import Limits
from vpd_jax.feedback.pool import GradingPool, default_workers
from vpd_jax.feedback.problems import ProblemFormatError, parse_problem_row

MAX_REQUEST_BYTES = 1 << 30


class _BadRequest(ValueError):
    pass


def _parse_request(body: bytes) -> tuple[list, Limits | None]:
    """Items and limits of a request, or _BadRequest saying what is wrong:
    any body at all (nesting too deep to parse included) gets an answer."""
    try:
        return _parse_request_unchecked(body)
    except RecursionError:
        raise _BadRequest("request nested too deeply") from None


def _parse_request_unchecked(body: bytes) -> tuple[list, Limits | None]:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _BadRequest(f"request body is not JSON: {e}") from None
    if not isinstance(request, dict) or not isinstance(
            request.get("items"), list):
        raise _BadRequest('request must be {"items": [...], "limits": ...}')
    try:
        limits = Limits.from_json(request.get("limits"))
    except (TypeError, ValueError) as e:
        raise _BadRequest(f"limits: {e}") from None
    items = []
    for index, item in enumerate(request["items"]):
        if not isinstance(item, dict) or not isinstance(
                item.get("completion"), str):
            raise _BadRequest(f"items[{index}]: expected an object with a "
                              f"'problem' row and a 'completion' string")
        try:
            problem = parse_problem_row(item.get("problem"),
                                        source="request items",
                                        row_index=index)
        except ProblemFormatError as e:
            raise _BadRequest(str(e)) from None
        items.append((problem, item["completion"]))
    return items, limits


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "FeedbackHTTPServer"
    # HTTP/1.0: one request per connection, so draining never waits on an
    # idle keep-alive connection.
    protocol_version = "HTTP/1.0"
    timeout = 120  # a client that stalls mid-request cannot pin a thread
    # ...nor one that drips a byte now and then: the request line, headers
    # and body must all arrive within this, or the connection is cut.
    read_deadline_s = 300.0

    def setup(self):
        super().setup()
        self._deadline = threading.Timer(self.read_deadline_s, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self):
        self._deadline.cancel()
        super().finish()

    def log_message(self, format, *args):  # quiet: one line per error only
        pass

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/health":
            self._reply(404, {"error": f"no such path {self.path}"})
            return
        self._reply(200, self.server.health())

    def do_POST(self):
        if self.path != "/grade_batch":
            self._reply(404, {"error": f"no such path {self.path}"})
            return
        if self.server.draining.is_set():
            self._reply(503, {"error": "server is shutting down"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self._reply(400, {"error": "missing or bad Content-Length"})
            return
        body = self.rfile.read(length)
        self._deadline.cancel()  # read in time: grading may take long
        try:
            items, limits = _parse_request(body)
        except _BadRequest as e:
            self._reply(400, {"error": str(e)})
            return
        try:
            results = self.server.pool.grade_many(items, limits)
        except Exception as e:  # a bug of ours: answer, keep serving
            print(f"vpd_jax.feedback.server: grading failed: {e!r}",
                  file=sys.stderr, flush=True)
            self._reply(500, {"error": f"grading failed: {e!r}"})
            return
        self._reply(200, {"results": results})


class FeedbackHTTPServer(http.server.ThreadingHTTPServer):
    """Threaded HTTP server whose close waits for requests in flight."""
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address, pool: GradingPool):
        super().__init__(address, _Handler)
        self.pool = pool
        self.draining = threading.Event()

    def health(self) -> dict:
        return {"status": "draining" if self.draining.is_set() else "ok",
                "sandbox": self.pool.sandbox.mode,
                "isolation": self.pool.sandbox.describe(),
                "workers": self.pool.workers,
                "in_flight": self.pool.in_flight, "pid": os.getpid()}


def _watch_parent(parent_pid: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        if os.getppid() != parent_pid:
            stop.set()


def serve(host: str, port: int, workers: int | None,
          parent_pid: int | None = None) -> None:
    bwrap.become_subreaper()  # this process only grades
    pool = GradingPool(workers)
    httpd = FeedbackHTTPServer((host, port), pool)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if parent_pid:
        threading.Thread(target=_watch_parent, args=(parent_pid, stop),
                         daemon=True).start()
    serving = threading.Thread(target=httpd.serve_forever,
                               kwargs={"poll_interval": 0.1})
    serving.start()
    bound_host, bound_port = httpd.server_address[:2]
    print(f"vpd_jax.feedback.server: pid {os.getpid()}, {pool.workers} "
          f"workers, sandbox {pool.sandbox.describe()}", file=sys.stderr,
          flush=True)
    print(f"READY {bound_host}:{bound_port}", flush=True)
    while not stop.wait(0.5):
        pass
    # Drain: refuse new work, answer what is in flight, then exit.
    httpd.draining.set()
    started = time.monotonic()
    httpd.shutdown()
    httpd.server_close()  # joins request threads (block_on_close)
    pool.close()
    serving.join()
    print(f"vpd_jax.feedback.server: drained in "
          f"{time.monotonic() - started:.1f} s, exiting", file=sys.stderr,
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vpd_jax.feedback.server",
        description="Sandboxed LiveCodeBench grading over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0,
                        help="0 picks a free port (printed as READY h:p)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"concurrent gradings (default: cores, "
                             f"{default_workers()} here)")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="drain and exit when this process is gone")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.workers, args.parent_pid)


if __name__ == "__main__":
    main()
