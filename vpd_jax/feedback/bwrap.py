"""The bubblewrap command line of the isolated mode.

Every namespace is unshared (user, pid, net, ipc, uts, cgroup): no network,
and the sandbox's PID 1 is bwrap's reaper, so killing bwrap ends every
process the program started. Only the system directories and the
interpreter's own tree are visible, read-only; /tmp and /dev/shm are small
private tmpfs; capabilities are dropped; `--die-with-parent` ties the
sandbox to the grader; a seccomp filter (seccomp.py) refuses new processes
and kills any syscall of another architecture. A grader running as root
starts bwrap as the slot's private uid (fallback.slot_uid) where it can, so
the sandbox is that uid outside, not root, and RLIMIT_NPROC holds; where
it cannot (the interpreter under a directory that uid cannot walk to, or no
unprivileged user namespaces), a pids cgroup per slot caps its tasks
(cgroup.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from vpd_jax.feedback import seccomp

TMP_SIZE = 64 << 20  # bytes of the private /tmp (a tmpfs: memory)
SHM_SIZE = 16 << 20  # bytes of the private /dev/shm (a tmpfs: memory)
HARNESS_INSIDE = "/run/harness.py"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_OWN_PACKAGE = "vpd_jax"  # its bundled data holds test cases


def visible_roots(extra_dirs: list[str]) -> list[str]:
    """What a program may read, in both modes: the system directories, the
    interpreter's prefixes and the site dirs (minus our own package, if it
    is installed there: its bundled data holds hidden tests). Paths as
    given (a symlinked /bin stays a symlink); deduplicated, existing only."""
    roots = list(_SYSTEM_DIRS)
    roots += [os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)]
    for d in map(os.path.realpath, extra_dirs):
        if d in split_dirs([d]):
            roots += [os.path.join(d, n) for n in sorted(os.listdir(d))
                      if not n.startswith(_OWN_PACKAGE)]
        elif os.path.isdir(d):
            roots.append(d)
    out, seen = [], set()
    for root in roots:
        if root not in seen and os.path.lexists(root):
            seen.add(root)
            out.append(root)
    return out


def split_dirs(extra_dirs: list[str]) -> list[str]:
    """The site dirs that hold our own package: visible entry by entry (a
    program may list them, but read only the other entries)."""
    out = []
    for d in map(os.path.realpath, extra_dirs):
        try:
            if any(n.startswith(_OWN_PACKAGE) for n in os.listdir(d)):
                out.append(d)
        except OSError:
            pass
    return out


def prefix(harness: str, extra_dirs: list[str]) -> list[str]:
    """bwrap and its options, up to the command (`--seccomp FD` goes last).

    The tmpfs mounts come before the binds, so a bind below /tmp (a venv in
    a temp dir) is not hidden by the private /tmp."""
    args = [shutil.which("bwrap") or "bwrap", "--unshare-all",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(SHM_SIZE), "--tmpfs", "/dev/shm",
            "--size", str(TMP_SIZE), "--tmpfs", "/tmp"]
    for root in visible_roots(extra_dirs) + [harness]:
        dest = HARNESS_INSIDE if root == harness else root
        if os.path.islink(root):  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(root), dest]
        else:
            args += ["--ro-bind", root, dest]
    return args + ["--chdir", "/tmp"]


_subreaper = False


def become_subreaper() -> None:
    """Makes this process the reaper of its orphaned descendants; for a
    process that only grades (the server, the CLI): in any other, orphans
    of unrelated children would wait on it too.

    Why: bwrap's outer process can exit before its pid-1 child is reaped;
    that child is then an orphan, and an init that does not reap (many
    container inits) keeps it a zombie: a process slot, and a charge in a
    pids cgroup, lost per test. As subreaper the grader gets it back and
    `reap_init` reaps it.
    """
    global _subreaper
    import ctypes
    try:
        _subreaper = ctypes.CDLL(None, use_errno=True).prctl(
            36, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ctypes.c_ulong(0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def is_subreaper() -> bool:
    return _subreaper


def reap_init(info_file) -> None:
    """Reaps the sandbox's pid 1 once bwrap itself has been reaped.

    Its pid comes from `--info-fd`, a file the program might have written
    too, so it is reaped only if it is verifiably a sandbox init of ours: a
    child of this process whose innermost pid is 1. Never blocks long.
    """
    info_file.seek(0)
    try:
        pid = int(json.loads(info_file.read(4096))["child-pid"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return
    for _ in range(100):
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f if b":" in line)
        except OSError:
            return  # gone: reaped already
        # bwrap is reaped already, so its orphans were reparented when it
        # exited: one that is not ours now never will be.
        if (int(fields.get(b"PPid", b"0")) != os.getpid()
                or fields.get(b"NSpid", b"").split()[-1:] != [b"1"]):
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.001)


def seccomp_file():
    """The no-fork filter in a fresh memfd, or None on an unknown arch.

    Fresh for every run: bwrap reads the filter from the fd's offset, which
    a shared, already-read fd would leave at its end.
    """
    program = seccomp.no_fork_filter()
    if program is None:
        return None
    fd = os.memfd_create("vpd-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return os.fdopen(fd, "rb")


def available(interpreter: str, harness: str, *, args: list[str] | None = None,
              pass_fds: tuple = (), user: int | None = None) -> bool:
    """Whether bwrap runs here with our options (it fails in some containers;
    as an unprivileged `user`, it needs unprivileged user namespaces)."""
    if shutil.which("bwrap") is None:
        return False
    filter_file = seccomp_file()
    info_file = tempfile.TemporaryFile()
    fds = [filter_file.fileno()] if filter_file else []
    extra = ["--seccomp", str(fds[0])] if fds else []
    extra += ["--info-fd", str(info_file.fileno())]
    ids = {} if user is None else dict(user=user, group=user, extra_groups=[])
    try:
        probe = subprocess.run(
            (args or prefix(harness, [])) + extra + [interpreter, "-I", "-S",
                                                     "-c", "pass"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
            pass_fds=fds + [info_file.fileno()] + list(pass_fds), **ids)
        reap_init(info_file)
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        if filter_file:
            filter_file.close()
        info_file.close()
    return probe.returncode == 0
