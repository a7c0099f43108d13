"""Runs one program on one test in a fresh, isolated interpreter.

Two isolation modes, chosen once per process (`detect_mode`):

* `bwrap`: bubblewrap with every namespace unshared (no network, new PID
  namespace so the whole tree dies with it, private /tmp as a small tmpfs),
  the system and the interpreter bound read-only, nothing else of the host
  visible, all capabilities dropped, `--die-with-parent`, and a seccomp
  filter that refuses new processes (seccomp.py: as root, RLIMIT_NPROC does
  not bind, so this is what stops a fork bomb).
* `fallback` (no working bubblewrap): a new session (process group), rlimits,
  a private temp dir as the working directory, an audit hook in the harness
  refusing sockets, ctypes and new processes (as LiveCodeBench's guard
  does), and, when the grader runs as root, a uid of
  its own per worker slot: the program cannot write outside world-writable
  places, signal the grader, or raise its limits, and every process it left
  is found by uid and killed after the test. Network isolation is only as
  good as the audit hook there; use bwrap where the machine allows.

`VPD_SANDBOX=bwrap|fallback` forces a mode (tests cover both). Limits are
set by the harness on itself after exec (never inherited from a big parent
by fork), soft = hard, before any program code runs.

The parent never reads a pipe: stdin, stdout, stderr, the job and the result
are unlinked temp files, so a program that floods output only fills a file
capped by RLIMIT_FSIZE, and nothing needs draining threads.
"""

from __future__ import annotations

import dataclasses
import json
import marshal
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

from vpd_jax.feedback import header, seccomp
from vpd_jax.feedback.limits import Limits

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "_harness.py")
MODES = ("bwrap", "fallback")
# Fallback as root: slot uids start here, offset by the grader's pid so two
# graders on one host never share a uid (and never kill each other's runs).
_UID_BASE = 1_000_000
_UIDS_PER_PROCESS = 64
_TMP_SIZE = 64 << 20  # bwrap's private /tmp (tmpfs) size
_STDERR_TAIL = 4096


@dataclasses.dataclass
class RunResult:
    """What happened, as facts; grading.py turns them into a verdict."""
    stdout: bytes
    stdout_bytes: int  # size written (stdout holds at most output_bytes)
    stderr_tail: str
    frame: dict | None  # the harness's result, None if it never wrote one
    exit_code: int | None
    signal: int | None
    timed_out: bool  # wall limit hit and killed by the parent
    cpu_s: float
    wall_s: float


def _interpreter() -> str:
    """The real interpreter binary (a venv's python is a symlink to it)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def _site_paths() -> list[str]:
    """Where the parent finds third-party packages (numpy for programs)."""
    return [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]


def _others_can_read(path: str) -> bool:
    """Whether an unprivileged uid can reach `path` (o+x on every directory)."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        try:
            mode = os.stat(os.sep.join(parts[:i]) or os.sep).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def _import_dirs() -> list[str]:
    """Directories the sandboxed interpreter imports from."""
    stdlib = os.path.dirname(os.__file__)
    dirs = [stdlib, os.path.join(stdlib, "lib-dynload")] + _site_paths()
    return [d for d in dirs if os.path.isdir(d)]


def _bwrap_binds() -> list[str]:
    roots = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    roots += [os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)]
    roots += [os.path.realpath(p) for p in _site_paths()]
    args, seen = [], set()
    for root in roots:
        if root in seen or not os.path.exists(root):
            continue
        seen.add(root)
        if os.path.islink(root):  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(root), root]
        else:
            args += ["--ro-bind", root, root]
    return args


def _bwrap_prefix() -> list[str]:
    bwrap = shutil.which("bwrap") or "bwrap"
    return [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534",
            "--hostname", "sandbox", *_bwrap_binds(),
            "--ro-bind", HARNESS, "/run/harness.py",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(_TMP_SIZE), "--tmpfs", "/tmp", "--chdir", "/tmp"]


def _seccomp_file():
    """The no-fork filter in a fresh memfd (bwrap reads it from its offset)."""
    program = seccomp.no_fork_filter()
    if program is None:
        return None
    fd = os.memfd_create("vpd-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return os.fdopen(fd, "rb")


def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    filter_file = _seccomp_file()
    fds = [filter_file.fileno()] if filter_file else []
    extra = ["--seccomp", str(fds[0])] if fds else []
    try:
        probe = subprocess.run(
            _bwrap_prefix() + extra + [_interpreter(), "-I", "-S", "-c",
                                       "pass"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
            pass_fds=fds)
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        if filter_file:
            filter_file.close()
    return probe.returncode == 0


_MODE_LOCK = threading.Lock()
_DETECTED: str | None = None


def detect_mode() -> str:
    """bwrap when it runs here, else fallback; VPD_SANDBOX forces one."""
    global _DETECTED
    forced = os.environ.get("VPD_SANDBOX", "auto")
    if forced in MODES:
        if forced == "bwrap" and not _bwrap_works():
            raise RuntimeError("VPD_SANDBOX=bwrap but bubblewrap does not run here "
                               "(install the Debian package 'bubblewrap', or unset "
                               "VPD_SANDBOX to use the fallback)")
        return forced
    if forced != "auto":
        raise ValueError(f"VPD_SANDBOX={forced!r}; use one of auto, bwrap, "
                         f"fallback")
    with _MODE_LOCK:
        if _DETECTED is None:
            _DETECTED = "bwrap" if _bwrap_works() else "fallback"
        return _DETECTED


def _temp_file(data: bytes = b"") -> "tempfile._TemporaryFileWrapper":
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


def _kill_uid(uid: int) -> None:
    """Kills every process whose real uid is `uid` (fallback as root only).

    Reads /proc rather than signalling -1 as that uid, so nothing but
    processes verified to carry this slot's private uid can ever be hit.
    """
    assert uid >= _UID_BASE, uid
    for _ in range(20):  # a fork bomb may spawn while we sweep; NPROC caps it
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Uid:"):
                            real_uid = int(line.split()[1])
                            break
                    else:
                        continue
            except (OSError, ValueError):
                continue
            if real_uid == uid:
                found = True
                try:
                    os.kill(int(name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not found:
            return
        time.sleep(0.002)


def _remove_uid_files(uid: int) -> None:
    """Fallback as root: removes what the slot uid left in world-writable dirs."""
    for root in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = os.scandir(root)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_uid != uid:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    pass


class Sandbox:
    """Runs tests; thread-safe, one run per worker slot at a time."""

    def __init__(self, mode: str | None = None, limits: Limits | None = None):
        self.mode = mode or detect_mode()
        if self.mode not in MODES:
            raise ValueError(f"sandbox mode {self.mode!r}; use one of {MODES}")
        self.limits = limits or Limits()
        self._python = _interpreter()
        self._header = header.header_names()
        self._site = _site_paths()
        self._as_root = os.geteuid() == 0
        self._prefix = _bwrap_prefix() if self.mode == "bwrap" else []
        # Fallback as root drops to a slot uid, which may not be able to enter
        # the interpreter's directories (pyenv under /root, mode 0700). The
        # harness then imports through /proc/self/fd/N of directory fds opened
        # here: a magic link reaches the directory without walking /root.
        self._dir_fds: dict[str, int] = {}
        if self.mode == "fallback" and self._as_root:
            for d in _import_dirs():
                if not _others_can_read(d):
                    self._dir_fds[d] = os.open(
                        d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def describe(self) -> str:
        if self.mode == "bwrap":
            return ("bwrap: namespaces (user, pid, net, ipc, uts), read-only "
                    "system, private tmpfs /tmp, caps dropped, rlimits")
        who = "a private uid per slot" if self._as_root else "the grader's uid"
        return (f"fallback (no bubblewrap): new session, rlimits, private temp "
                f"dir, audit hook against sockets/ctypes, {who}")

    def _slot_uid(self, slot: int) -> int | None:
        if self.mode != "fallback" or not self._as_root:
            return None
        if not 0 <= slot < _UIDS_PER_PROCESS:
            raise ValueError(f"slot {slot} out of range [0, {_UIDS_PER_PROCESS})")
        return _UID_BASE + (os.getpid() % 4_000_000) * _UIDS_PER_PROCESS + slot

    def run(self, code: str, *, mode: str, stdin: str = "",
            args: list | None = None,
            func_name: str | None = None, limits: Limits | None = None,
            slot: int = 0) -> RunResult:
        """Runs `code` on one test: stdin text (mode 'stdin') or parsed args."""
        limits = limits or self.limits
        uid = self._slot_uid(slot)
        token = secrets.token_hex(16)
        job = {"code": code, "mode": mode, "func_name": func_name, "args": list(args or []),
               "limits": limits.harness_json(), "token": token, "uid": uid,
               "path_fds": dict(self._dir_fds) if uid is not None else {},
               "audit_guard": self.mode == "fallback",
               "site_paths": list(self._site), "header_names": self._header,
               "recursion_limit": header.RECURSION_LIMIT}
        workdir = None
        if self.mode == "fallback":
            workdir = tempfile.mkdtemp(prefix="vpd-sandbox-")
            if uid is not None:
                os.chown(workdir, uid, uid)
        files = [_temp_file(stdin.encode() if mode == "stdin" else b""),
                 _temp_file(), _temp_file(), _temp_file(marshal.dumps(job)),
                 _temp_file()]
        f_in, f_out, f_err, f_job, f_res = files
        filter_file = _seccomp_file() if self.mode == "bwrap" else None
        if filter_file is not None:
            files.append(filter_file)
        try:
            result = self._spawn_and_wait(f_in, f_out, f_err, f_job, f_res,
                                          filter_file, workdir, limits)
            stdout, size = _read_capped(f_out, limits.output_bytes)
            result.stdout, result.stdout_bytes = stdout, size
            result.stderr_tail = _tail(f_err, _STDERR_TAIL)
            result.frame = _read_frame(f_res, token)
            return result
        finally:
            for f in files:
                f.close()
            if uid is not None:
                _kill_uid(uid)
                _remove_uid_files(uid)
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def _command(self, job_fd: int, res_fd: int,
                 seccomp_fd: int | None) -> list[str]:
        harness = "/run/harness.py" if self.mode == "bwrap" else HARNESS
        prefix = list(self._prefix)
        if seccomp_fd is not None:
            prefix += ["--seccomp", str(seccomp_fd)]
        return prefix + [self._python, "-I", "-S", "-B", harness,
                         str(job_fd), str(res_fd)]

    def _env(self, workdir: str | None) -> dict[str, str]:
        home = workdir or "/tmp"
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": home, "TMPDIR": home, "PYTHONIOENCODING": "utf-8",
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}

    def _spawn_and_wait(self, f_in, f_out, f_err, f_job, f_res, filter_file,
                        workdir, limits: Limits) -> RunResult:
        job_fd, res_fd = f_job.fileno(), f_res.fileno()
        fds = [job_fd, res_fd, *self._dir_fds.values()]
        seccomp_fd = filter_file.fileno() if filter_file is not None else None
        if seccomp_fd is not None:
            fds.append(seccomp_fd)
        start = time.perf_counter()
        proc = subprocess.Popen(
            self._command(job_fd, res_fd, seccomp_fd), stdin=f_in,
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
                         cpu_s=cpu_s, wall_s=wall)


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


def _read_frame(f, token: str) -> dict | None:
    """The harness's result, or None if missing, torn, or not from the harness."""
    f.seek(0)
    data = f.read(64 << 20)
    if not data:
        return None
    try:
        frame = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(frame, dict) or frame.get("token") != token:
        return None
    return frame
