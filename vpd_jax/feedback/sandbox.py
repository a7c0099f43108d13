"""Runs one program on one test in a fresh, isolated interpreter.

Two isolation modes, chosen once per process (`detect_mode`):

* `bwrap` (bwrap.py): every namespace unshared (no network; a PID namespace
  dies with the sandbox), only the system and the interpreter visible,
  read-only, private tmpfs /tmp and /dev/shm, capabilities dropped, dies
  with the grader, a seccomp filter refusing new processes and killing
  foreign-arch syscalls (seccomp.py), and, for a root grader, a non-root
  uid outside or a pids cgroup per slot (cgroup.py).
* `fallback` (fallback.py; no working bubblewrap): a new session, rlimits,
  a private temp dir as working directory, and in the kernel: Landlock
  (reads only the system and interpreter trees, writes only its temp dir:
  no test data, no other process's /proc) and a seccomp filter (no fork,
  exec, sockets, io_uring or IPC objects); an audit hook as LiveCodeBench's
  guard; as root, a private uid per worker slot whose processes (zombie
  leaders included) and stray files are swept after each test. Without
  Landlock (kernels before 5.13) files stay as readable as that uid's:
  training refuses this mode unless `feedback.allow_weak_sandbox`.

`VPD_SANDBOX=bwrap|fallback` forces a mode (tests cover both). Limits are
set by the harness on itself after exec (never inherited from a big parent
by fork), soft = hard, before any program code runs.

The parent never reads a pipe: stdin, stdout, stderr, the job and the result
are unlinked temp files, so a program that floods output only fills a file
capped by RLIMIT_FSIZE, and nothing needs draining threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import marshal
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

from vpd_jax.feedback import bwrap, cgroup, fallback, header, record, seccomp
from vpd_jax.feedback.limits import Limits

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "_harness.py")
MODES = ("bwrap", "fallback")
_STDERR_TAIL = 4096


_ADDR_NO_RANDOMIZE = 0x0040000  # linux/personality.h


@contextlib.contextmanager
def fixed_addresses():
    """Children spawned by this thread inside the block run without address
    space randomisation, so the same program prints the same object
    addresses (`<map object at 0x7ffff75280d0>`, a weak policy's commonest
    wrong answer) at every grading and a seeded run repeats; with them
    random, critiques, the teacher's context and everything after differed
    between two runs of one seed. personality(2) is per thread: other
    threads' spawns are untouched, and the flag is restored on exit. ASLR
    guards a process against memory-corruption exploits; a graded program
    runs arbitrary Python already (ctypes included), so inside the sandbox
    it protects nothing that seccomp, namespaces and limits do not. Where
    personality() is unavailable, or a setuid bwrap clears the flag at
    exec, addresses stay random: only reproducibility is lost."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # dlopen(NULL): the loaded libc, microseconds
        old = libc.personality(0xFFFFFFFF)  # query
    except (OSError, AttributeError):
        old = -1
    changed = (old != -1 and not old & _ADDR_NO_RANDOMIZE
               and libc.personality(old | _ADDR_NO_RANDOMIZE) != -1)
    try:
        yield
    finally:
        if changed:
            libc.personality(old)


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


def _real_dirs(paths: list[str]) -> list[str]:
    """Real paths, deduplicated: bwrap binds a venv reached through a
    symlink at its real place, so the program's sys.path must name that."""
    return list(dict.fromkeys(os.path.realpath(p) for p in paths))


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
        self._site = _real_dirs(site_paths())
        # Where our own package may be installed besides the site dirs (a
        # Debian dist-packages dir under /usr): hidden from programs there too.
        self._hide_in = _real_dirs([p for p in sys.path if p and os.path.isdir(p)])
        self._as_root = os.geteuid() == 0
        self._prefix: list[str] = []
        self._bwrap_as_slot = False  # bwrap started as the slot's uid
        self._pids_cgroup = False  # else: a pids cgroup per slot (as root)
        if self.mode == "bwrap":
            self._init_bwrap()
        self._dir_fds: dict[str, int] = {}
        self._confine: dict | None = None
        if self.mode == "fallback":
            if self._as_root:
                stdlib = os.path.dirname(os.__file__)
                self._dir_fds = fallback.import_dir_fds(
                    [stdlib, os.path.join(stdlib, "lib-dynload")]
                    + self._site)
            self._confine = {
                "landlock_abi": fallback.landlock_abi(),
                "seccomp": seccomp.fallback_filter() or b"",
                "read_dirs": [os.path.realpath(r) for r in
                              bwrap.visible_roots(self._site, self._hide_in)],
                "list_dirs": bwrap.listable_dirs(self._site, self._hide_in),
                "read_files": ["/dev/null", "/dev/zero", "/dev/random",
                               "/dev/urandom"]}
            self._check_confinement()

    def _check_confinement(self) -> None:
        """One trivial run at start, so a kernel that refuses the fallback's
        Landlock or seccomp setup fails here, loudly, not every test."""
        try:
            self.run("pass", mode="stdin")
        except SandboxError as e:
            raise SandboxError(
                f"the fallback sandbox cannot confine programs here ({e}); "
                f"run where bubblewrap works, or report this kernel") from None

    def _init_bwrap(self) -> None:
        """As root, bwrap runs as the slot's uid when this host allows it
        (unprivileged user namespaces, an interpreter that uid can reach):
        then the sandbox is not root outside and RLIMIT_NPROC counts its
        tasks. Else a pids cgroup per slot caps them (cgroup.py)."""
        self._prefix = bwrap.prefix(HARNESS, self._site, self._hide_in)
        if not self._as_root:
            return
        self._bwrap_as_slot = bwrap.available(
            self._python, HARNESS, args=self._prefix,
            user=fallback.slot_uid(0))
        self._pids_cgroup = (not self._bwrap_as_slot) and cgroup.available()

    def enter_slot(self, slot: int) -> None:
        """Called once by a thread that will run only this slot's tests (a
        pool worker): it joins the slot's pids cgroup now, so its runs need
        no per-test migration (cgroup.py). Only in a subreaper (the server,
        the CLI): elsewhere an orphaned sandbox init might stay charged
        there until the host's init reaps it."""
        if self._pids_cgroup and bwrap.is_subreaper():
            cgroup.pin_thread(slot, self.limits.nproc)

    def describe(self) -> str:
        """One line for logs and /health: what isolates the programs."""
        if self.mode == "bwrap":
            who = ("a private uid per slot outside" if self._bwrap_as_slot
                   else "root outside, tasks capped by a pids cgroup per slot"
                   if self._pids_cgroup else
                   "root outside, NO task cap (RLIMIT_NPROC does not bind "
                   "root; no unprivileged bwrap, no writable pids cgroup "
                   "here)" if self._as_root
                   else "the grader's own uid outside")
            return ("bwrap: namespaces (user, pid, net, ipc, uts), read-only "
                    "system, private tmpfs /tmp and /dev/shm, caps dropped, "
                    f"seccomp (no fork, native syscalls only), rlimits, {who}")
        who = ("a private uid per slot" if self._as_root
               else "the grader's own uid")
        confine = self._confine or {}
        landlock = (f"Landlock ABI {confine['landlock_abi']} (reads: system "
                    f"and interpreter only; writes: its temp dir only)"
                    if confine.get("landlock_abi") else
                    "NO Landlock (this kernel lacks it: the program can read "
                    "every file its uid can)")
        return (f"fallback (no bubblewrap): new session, rlimits, private temp "
                f"dir, {landlock}, seccomp (no fork/exec/sockets/IPC, native "
                f"syscalls only), audit hook, {who}")

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
            # seccomp filter (and the audit hook) there instead.
            rlimits["nproc"] = None
        cgroup_fd = (cgroup.procs_fd(slot, self.limits.nproc)
                     if self._pids_cgroup and not cgroup.pinned(slot)
                     else None)
        job = {"code": code, "mode": mode, "func_name": func_name,
               "args": list(args or []),
               "limits": rlimits, "token": token, "uid": uid,
               "path_fds": dict(self._dir_fds) if uid is not None else {},
               "confine": None, "cgroup_fd": cgroup_fd,
               "audit_guard": self.mode == "fallback",
               "site_paths": list(self._site), "header_names": self._header,
               "recursion_limit": header.RECURSION_LIMIT,
               "record_bytes": record.RECORD_BYTES}
        workdir = None
        if self.mode == "fallback":
            workdir = tempfile.mkdtemp(prefix="vpd-sandbox-")
            if uid is not None:
                os.chown(workdir, uid, uid)
            job["confine"] = dict(self._confine, workdir=workdir)
        files = [_temp_file(stdin.encode() if mode == "stdin" else b""),
                 _temp_file(), _temp_file(), _temp_file(marshal.dumps(job)),
                 _temp_file(), _temp_file()]
        f_in, f_out, f_err, f_job, f_res, f_started = files
        filter_file = bwrap.seccomp_file() if self.mode == "bwrap" else None
        if filter_file is not None:
            files.append(filter_file)
        info_file = _temp_file() if self.mode == "bwrap" else None
        if info_file is not None:
            files.append(info_file)
        try:
            result = self._spawn_and_wait(f_in, f_out, f_err, f_job, f_res,
                                          f_started, filter_file, workdir,
                                          limits, slot, cgroup_fd, info_file)
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
                fallback.remove_tree(workdir)

    def _command(self, job_fd: int, res_fd: int, started_fd: int,
                 seccomp_fd: int | None, info_fd: int | None) -> list[str]:
        harness = bwrap.HARNESS_INSIDE if self.mode == "bwrap" else HARNESS
        prefix = list(self._prefix)
        if info_fd is not None:
            prefix += ["--info-fd", str(info_fd)]
        if seccomp_fd is not None:
            prefix += ["--seccomp", str(seccomp_fd)]
        # Not -I: its -E would ignore PYTHONHASHSEED, and str/bytes hashing
        # would then be salted per process, so a program that prints a set
        # could get a different output, critique and even verdict each time
        # it is graded, and a seeded run would not repeat. -E protects
        # nothing here: the environment is ours alone (_env), never the
        # user's; -s is -I's other part, and the harness drops its own
        # directory from sys.path itself (-I's -P, on any Python version).
        return prefix + [self._python, "-s", "-S", "-B", harness,
                         str(job_fd), str(res_fd), str(started_fd)]

    def _env(self, workdir: str | None) -> dict[str, str]:
        """A small, fixed environment; VPD_GRADER_PID names the grader that
        owns a sandboxed process (for operators and leak checks);
        PYTHONHASHSEED=0 makes set and dict-of-str orders, so verdicts and
        critiques, the same on every grading of the same program."""
        home = workdir or "/tmp"
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": home, "TMPDIR": home, "PYTHONIOENCODING": "utf-8",
                "PYTHONHASHSEED": "0",
                "VPD_GRADER_PID": str(os.getpid()),
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}

    def _spawn_ids(self, slot: int) -> dict:
        if not self._bwrap_as_slot:
            return {}
        uid = fallback.slot_uid(slot)
        return {"user": uid, "group": uid, "extra_groups": []}

    def _spawn_and_wait(self, f_in, f_out, f_err, f_job, f_res, f_started,
                        filter_file, workdir, limits: Limits,
                        slot: int, job_cgroup_fd: int | None,
                        info_file) -> RunResult:
        job_fd, res_fd = f_job.fileno(), f_res.fileno()
        started_fd = f_started.fileno()
        fds = [job_fd, res_fd, started_fd, *self._dir_fds.values()]
        if job_cgroup_fd is not None:
            fds.append(job_cgroup_fd)
        seccomp_fd = filter_file.fileno() if filter_file is not None else None
        if seccomp_fd is not None:
            fds.append(seccomp_fd)
        info_fd = info_file.fileno() if info_file is not None else None
        if info_fd is not None:
            fds.append(info_fd)
        start = time.perf_counter()
        with fixed_addresses():
            proc = subprocess.Popen(
                self._command(job_fd, res_fd, started_fd, seccomp_fd, info_fd),
                stdin=f_in,
                stdout=f_out, stderr=f_err, pass_fds=fds, cwd=workdir,
                env=self._env(workdir), start_new_session=True,
                **self._spawn_ids(slot))
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
        if info_file is not None:
            bwrap.reap_init(info_file)
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

