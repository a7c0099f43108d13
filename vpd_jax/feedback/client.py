"""Client of the grading server, and `start_server` for one per host.

The server is stateless and grading is idempotent, so a request that failed
on the way (connection refused or reset, timeout, 5xx) is simply sent again,
after a short backoff. A 4xx answer is our mistake (a malformed problem) and
is raised at once with the server's message.

A server that still fails after the retries is restarted when it is ours
(started by `start_server`) and the chunk graded once more; if that fails
too, the chunk's rows are grading errors (`grading.error_row`), logged, so
a training run outlives its grader.

A large batch is sent as chunks, a few in flight at once: each request
stays well inside its timeout (a timed-out request would be graded again
from scratch), and the server's workers stay busy across chunk boundaries.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from vpd_jax.feedback.grading import error_row
from vpd_jax.feedback.limits import Limits
from vpd_jax.feedback.problems import Problem


class FeedbackError(RuntimeError):
    """The server could not be reached, or refused the request."""


class FeedbackRejected(FeedbackError):
    """A 4xx answer: the request itself was wrong (a bug of the caller's)."""


class FeedbackClient:
    """Talks to one `python -m vpd_jax.feedback.server` over HTTP."""

    def __init__(self, address: str, timeout_s: float = 600.0,
                 retries: int = 3, backoff_s: float = 0.5,
                 chunk_size: int = 32, max_in_flight: int = 4,
                 server: "ServerHandle | None" = None):
        if "://" in address:
            address = address.split("://", 1)[1]
        self._address = address.rstrip("/")
        self.server = server  # ours to restart when it dies
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.chunk_size = max(1, chunk_size)
        self.max_in_flight = max(1, max_in_flight)

    @property
    def address(self) -> str:
        return self.server.address if self.server else self._address

    def _request(self, method: str, path: str, payload: dict | None = None,
                 timeout_s: float | None = None) -> dict:
        url = f"http://{self.address}{path}"
        data = None if payload is None else json.dumps(payload).encode()
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(
                url, data=data, method=method,
                headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(
                        request, timeout=timeout_s or self.timeout_s) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                message = _error_message(e)
                if 400 <= e.code < 500:
                    raise FeedbackRejected(f"{url}: {e.code}: {message}") from None
                last_error = FeedbackError(f"{url}: {e.code}: {message}")
            except (urllib.error.URLError, OSError, ValueError) as e:
                last_error = e  # refused, reset, timed out, torn body
        raise FeedbackError(f"{url}: no answer after {self.retries + 1} "
                            f"tries: {last_error!r}")

    def health(self, timeout_s: float = 10.0) -> dict:
        return self._request("GET", "/health", timeout_s=timeout_s)

    def grade_batch(self, items: list[tuple[Problem, str]],
                    limits: Limits | None = None) -> list[dict]:
        """Grade dicts for (problem, completion) pairs, in the same order."""
        chunks = [items[i:i + self.chunk_size]
                  for i in range(0, len(items), self.chunk_size)]
        if len(chunks) <= 1:
            return self._grade_chunk(chunks[0], limits) if chunks else []
        with concurrent.futures.ThreadPoolExecutor(
                min(self.max_in_flight, len(chunks))) as pool:
            parts = list(pool.map(lambda c: self._grade_chunk(c, limits),
                                  chunks))
        return [result for part in parts for result in part]

    def _grade_chunk(self, items, limits) -> list[dict]:
        """Rows for one chunk. A server that stops answering is restarted
        (when it is ours) and the chunk graded once more; if that fails too,
        its rows are grading errors, logged, and the caller carries on."""
        generation = self.server.generation if self.server else 0
        try:
            return self._post_chunk(items, limits)
        except FeedbackRejected:
            raise
        except FeedbackError as e:
            error = e
        if self.server is not None:
            try:
                self.server.restart(generation, reason=str(error))
                return self._post_chunk(items, limits)
            except FeedbackRejected:
                raise
            except FeedbackError as e:
                error = e
        print(f"vpd_jax.feedback: {len(items)} solutions marked as grading "
              f"errors: {error}", file=sys.stderr, flush=True)
        return [error_row(p.question_id, len(p.all_tests),
                          f"grading server failed: {error}")
                for p, _ in items]

    def _post_chunk(self, items, limits) -> list[dict]:
        payload = {"items": [{"problem": p.to_row(), "completion": c}
                             for p, c in items],
                   "limits": limits.to_json() if limits else None}
        answer = self._request("POST", "/grade_batch", payload)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(items):
            raise FeedbackError(f"server answered {answer!r:.200} for "
                                f"{len(items)} items")
        return results


def _error_message(e: urllib.error.HTTPError) -> str:
    try:
        return json.loads(e.read()).get("error", "")
    except (ValueError, OSError, AttributeError):
        return e.reason


class ServerHandle:
    """A running server subprocess; closing it drains and stops it.

    Clients made by `client()` restart it when it stops answering (killed
    for memory, crashed): `restart` is idempotent per failure, so chunks
    that fail together restart it once.
    """

    def __init__(self, process: subprocess.Popen, address: str,
                 start_args: dict | None = None):
        self.process = process
        self.address = address
        self.generation = 0  # restarts so far
        self._start_args = start_args or {}
        self._lock = threading.Lock()

    def client(self, **kwargs) -> FeedbackClient:
        return FeedbackClient(self.address, server=self, **kwargs)

    def restart(self, seen_generation: int, reason: str = "") -> None:
        """Starts a fresh server, unless another caller already did since
        `seen_generation`. Raises FeedbackError if it does not start."""
        with self._lock:
            if self.generation != seen_generation:
                return
            print(f"vpd_jax.feedback: restarting the grading server (pid "
                  f"{self.process.pid}, exit code {self.process.poll()}): "
                  f"{reason}", file=sys.stderr, flush=True)
            self.process.kill()
            self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()
            fresh = start_server(**self._start_args)
            self.process, self.address = fresh.process, fresh.address
            self.generation += 1

    def close(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (the server drains), then SIGKILL if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_server(workers: int | None = None, host: str = "127.0.0.1",
                 port: int = 0, *, startup_timeout_s: float = 60.0,
                 env: dict | None = None) -> ServerHandle:
    """Starts `python -m vpd_jax.feedback.server` and waits until healthy.

    The server watches this process and exits when it dies. Its stderr is
    ours, so its start line (isolation mode) shows in the trainer's log.
    """
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (repo_root, child_env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "vpd_jax.feedback.server", "--host", host,
               "--port", str(port), "--parent-pid", str(os.getpid())]
    if workers:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=child_env)
    deadline = time.monotonic() + startup_timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(left, 0))
        chunk = process.stdout.read1(4096) if ready else b""
        if not chunk:
            process.kill()
            process.wait()
            raise FeedbackError(
                f"feedback server did not start within {startup_timeout_s} s "
                f"(exit code {process.returncode}); see its stderr above")
        line += chunk
    if not line.startswith(b"READY "):
        process.kill()
        process.wait()
        raise FeedbackError(f"feedback server said {line!r}, not READY")
    handle = ServerHandle(process, line.split()[1].decode(), dict(
        workers=workers, host=host, port=port,
        startup_timeout_s=startup_timeout_s,
        env=env))
    try:
        handle.client(retries=5, backoff_s=0.2).health()
    except FeedbackError:
        handle.close()
        raise
    return handle
