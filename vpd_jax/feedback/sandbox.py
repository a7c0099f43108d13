"""Runs one program on one test in a fresh, isolated interpreter.

Two isolation modes, chosen once per process (`detect_mode`):

* `bwrap` (bwrap.py): every namespace unshared (no network; a PID namespace
  dies with the sandbox), only the system and the interpreter visible,
  read-only, a private tmpfs /tmp, capabilities dropped, dies with the
  grader, and a seccomp filter refusing new processes (seccomp.py).
* `fallback` (fallback.py; no working bubblewrap): a new session, rlimits,
  a private temp dir as working directory, an audit hook in the harness
  refusing sockets, ctypes lookups of libc's process/socket calls and new
  processes (as LiveCodeBench's own guard does), and, when the grader runs
  as root, a private uid per worker slot whose processes and stray files
  are swept after each test. The network is only as closed as that hook
  makes it: use bwrap where the machine allows.

`VPD_SANDBOX=bwrap|fallback` forces a mode (tests cover both). Limits are
set by the harness on itself after exec (never inherited from a big parent
by fork), soft = hard, before any program code runs.

The parent never reads a pipe: stdin, stdout, stderr, the job and the result
are unlinked temp files, so a program that floods output only fills a file
capped by RLIMIT_FSIZE, and nothing needs draining threads.
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from vpd_jax.feedback import bwrap, fallback, header, record
from vpd_jax.feedback.limits import Limits

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "_harness.py")
MODES = ("bwrap", "fallback")
_STDERR_TAIL = 4096


class SandboxError(RuntimeError):
    """The sandbox itself failed to start: an error of ours, not a verdict."""


@dataclasses.dataclass
class RunResult:
    """What happened, as facts; grading.py turns them into a verdict."""
    stdout: bytes
    stdout_bytes: int  # size written (stdout holds at most output_bytes)
    stderr_tail: str
    frame: dict | None  # the harness's checked result, None if none or refused
    exit_code: int | None
    signal: int | None
    timed_out: bool  # wall limit hit and killed by the parent
    started: bool  # the harness finished its setup and ran the program
    cpu_s: float
    wall_s: float
    record_error: str = ""  # why a record that was written was refused


def interpreter() -> str:
    """The real interpreter binary (a venv's python is a symlink to it)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def site_paths() -> list[str]:
    """Where the grader finds third-party packages (numpy, for programs)."""
    return [p for p in sys.path
            if p.endswith("site-packages") and os.path.isdir(p)]


def bwrap_available() -> bool:
    return bwrap.available(interpreter(), HARNESS)


_MODE_LOCK = threading.Lock()
_DETECTED: str | None = None


def detect_mode() -> str:
    """bwrap when it runs here, else fallback; VPD_SANDBOX forces one."""
    global _DETECTED
    forced = os.environ.get("VPD_SANDBOX", "auto")
    if forced in MODES:
        if forced == "bwrap" and not bwrap_available():
            raise RuntimeError(
                "VPD_SANDBOX=bwrap but bubblewrap does not run here (install "
                "the Debian package 'bubblewrap', or unset VPD_SANDBOX to use "
                "the fallback)")
        return forced
    if forced != "auto":
        raise ValueError(f"VPD_SANDBOX={forced!r}; use one of auto, bwrap, "
                         f"fallback")
    with _MODE_LOCK:
        if _DETECTED is None:
            _DETECTED = "bwrap" if bwrap_available() else "fallback"
        return _DETECTED


def _temp_file(data: bytes = b""):
    f = tempfile.TemporaryFile()
    if data:
        f.write(data)
        f.seek(0)
    return f


def _read_capped(f, limit: int) -> tuple[bytes, int]:
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    return f.read(min(size, limit)), size


def _tail(f, n: int) -> str:
    size = os.fstat(f.fileno()).st_size
    f.seek(max(0, size - n))
    return f.read().decode("utf-8", "replace")


class Sandbox:
    """Runs tests; thread-safe, one run per worker slot at a time."""

    def __init__(self, mode: str | None = None, limits: Limits | None = None):
        self.mode = mode or detect_mode()
        if self.mode not in MODES:
            raise ValueError(f"sandbox mode {self.mode!r}; use one of {MODES}")
        self.limits = limits or Limits()
        self._python = interpreter()
        self._header = header.header_names()
        self._site = site_paths()
        self._as_root = os.geteuid() == 0
        self._prefix = (bwrap.prefix(HARNESS, self._site)
                        if self.mode == "bwrap" else [])
        self._dir_fds: dict[str, int] = {}
        if self.mode == "fallback" and self._as_root:
            stdlib = os.path.dirname(os.__file__)
            self._dir_fds = fallback.import_dir_fds(
                [stdlib, os.path.join(stdlib, "lib-dynload")] + self._site)

    def describe(self) -> str:
        """One line for logs and /health: what isolates the programs."""
        if self.mode == "bwrap":
            return ("bwrap: namespaces (user, pid, net, ipc, uts), read-only "
                    "system, private tmpfs /tmp, caps dropped, no-fork "
                    "seccomp, rlimits")
        who = ("a private uid per slot" if self._as_root
               else "the grader's own uid")
        return (f"fallback (no bubblewrap): new session, rlimits, private temp "
                f"dir, audit hook against sockets/ctypes/processes, {who}")

    def _slot_uid(self, slot: int) -> int | None:
        if self.mode != "fallback" or not self._as_root:
            return None
        return fallback.slot_uid(slot)

    def run(self, code: str, *, mode: str, stdin: str = "",
            args: list | None = None,
            func_name: str | None = None, limits: Limits | None = None,
            slot: int = 0) -> RunResult:
        """Runs `code` on one test: stdin text (mode 'stdin') or parsed args.

        A sandbox that fails to start (bwrap refused, the host out of
        processes) is tried once more, then raises SandboxError.
        """
        result = self._run_once(code, mode, stdin, args, func_name, limits,
                                slot)
        if not result.started:
            time.sleep(0.05)
            result = self._run_once(code, mode, stdin, args, func_name,
                                    limits, slot)
        if not result.started:
            raise SandboxError(
                f"the {self.mode} sandbox failed to start (exit code "
                f"{result.exit_code}, signal {result.signal}): "
                f"{result.stderr_tail[-500:].strip()}")
        return result

    def _run_once(self, code, mode, stdin, args, func_name, limits,
                  slot) -> RunResult:
        limits = limits or self.limits
        uid = self._slot_uid(slot)
        token = secrets.token_hex(16)
        rlimits = limits.harness_json()
        if self.mode == "fallback" and uid is None:
            # Unprivileged fallback: RLIMIT_NPROC would count every process
            # of the grader's own user, so it would refuse the program's
            # threads on a busy host. New processes are refused by the
            # audit hook there instead.
            rlimits["nproc"] = None
        job = {"code": code, "mode": mode, "func_name": func_name,
               "args": list(args or []),
               "limits": rlimits, "token": token, "uid": uid,
               "path_fds": dict(self._dir_fds) if uid is not None else {},
               "audit_guard": self.mode == "fallback",
               "site_paths": list(self._site), "header_names": self._header,
               "recursion_limit": header.RECURSION_LIMIT,
               "record_bytes": record.RECORD_BYTES}
        workdir = None
        if self.mode == "fallback":
            workdir = tempfile.mkdtemp(prefix="vpd-sandbox-")
            if uid is not None:
                os.chown(workdir, uid, uid)
        files = [_temp_file(stdin.encode() if mode == "stdin" else b""),
                 _temp_file(), _temp_file(), _temp_file(marshal.dumps(job)),
                 _temp_file(), _temp_file()]
        f_in, f_out, f_err, f_job, f_res, f_started = files
        filter_file = bwrap.seccomp_file() if self.mode == "bwrap" else None
        if filter_file is not None:
            files.append(filter_file)
        try:
            result = self._spawn_and_wait(f_in, f_out, f_err, f_job, f_res,
                                          f_started, filter_file, workdir,
                                          limits)
            stdout, size = _read_capped(f_out, limits.output_bytes)
            result.stdout, result.stdout_bytes = stdout, size
            result.stderr_tail = _tail(f_err, _STDERR_TAIL)
            checked = record.read(f_res, token)
            result.frame, result.record_error = checked.frame, checked.error
            result.started = os.fstat(f_started.fileno()).st_size > 0
            return result
        finally:
            for f in files:
                f.close()
            if uid is not None:
                fallback.kill_uid(uid)
                fallback.remove_uid_files(uid)
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def _command(self, job_fd: int, res_fd: int, started_fd: int,
                 seccomp_fd: int | None) -> list[str]:
        harness = bwrap.HARNESS_INSIDE if self.mode == "bwrap" else HARNESS
        prefix = list(self._prefix)
        if seccomp_fd is not None:
            prefix += ["--seccomp", str(seccomp_fd)]
        return prefix + [self._python, "-I", "-S", "-B", harness,
                         str(job_fd), str(res_fd), str(started_fd)]

    def _env(self, workdir: str | None) -> dict[str, str]:
        """A small, fixed environment; VPD_GRADER_PID names the grader that
        owns a sandboxed process (for operators and leak checks)."""
        home = workdir or "/tmp"
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": home, "TMPDIR": home, "PYTHONIOENCODING": "utf-8",
                "VPD_GRADER_PID": str(os.getpid()),
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}

    def _spawn_and_wait(self, f_in, f_out, f_err, f_job, f_res, f_started,
                        filter_file, workdir, limits: Limits) -> RunResult:
        job_fd, res_fd = f_job.fileno(), f_res.fileno()
        started_fd = f_started.fileno()
        fds = [job_fd, res_fd, started_fd, *self._dir_fds.values()]
        seccomp_fd = filter_file.fileno() if filter_file is not None else None
        if seccomp_fd is not None:
            fds.append(seccomp_fd)
        start = time.perf_counter()
        proc = subprocess.Popen(
            self._command(job_fd, res_fd, started_fd, seccomp_fd), stdin=f_in,
            stdout=f_out, stderr=f_err, pass_fds=fds, cwd=workdir,
            env=self._env(workdir), start_new_session=True)
        timed_out = False
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            pidfd = None
        try:
            if pidfd is not None:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if not poller.poll(limits.wall_limit_s * 1000):
                    timed_out = True
            else:
                try:
                    proc.wait(limits.wall_limit_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            if pidfd is not None:
                os.close(pidfd)
            # The whole group dies, whether it finished or not: no orphan keeps
            # running after its test. (bwrap: killing it ends its PID namespace.)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        status, cpu_s = _reap(proc)
        wall = time.perf_counter() - start
        exit_code = sig = None
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            exit_code = os.WEXITSTATUS(status)
            if self.mode == "bwrap" and exit_code > 128:
                sig = exit_code - 128  # bwrap reports its child's signal this way
        return RunResult(stdout=b"", stdout_bytes=0, stderr_tail="", frame=None,
                         exit_code=exit_code, signal=sig, timed_out=timed_out,
                         started=False, cpu_s=cpu_s, wall_s=wall)


def _reap(proc: subprocess.Popen) -> tuple[int, float]:
    """Waits for the child with its rusage (CPU time of it and its children)."""
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:  # already reaped elsewhere
            return 0, 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return status, usage.ru_utime + usage.ru_stime

