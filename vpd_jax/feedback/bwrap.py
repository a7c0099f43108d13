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

import os
import shutil
import subprocess
import sys

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
    for d in extra_dirs:
        d = os.path.realpath(d)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        if any(n.startswith(_OWN_PACKAGE) for n in names):
            roots += [os.path.join(d, n) for n in sorted(names)
                      if not n.startswith(_OWN_PACKAGE)]
        else:
            roots.append(d)
    out, seen = [], set()
    for root in roots:
        if root not in seen and os.path.lexists(root):
            seen.add(root)
            out.append(root)
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
    fds = [filter_file.fileno()] if filter_file else []
    extra = ["--seccomp", str(fds[0])] if fds else []
    ids = {} if user is None else dict(user=user, group=user, extra_groups=[])
    try:
        probe = subprocess.run(
            (args or prefix(harness, [])) + extra + [interpreter, "-I", "-S",
                                                     "-c", "pass"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
            pass_fds=fds + list(pass_fds), **ids)
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        if filter_file:
            filter_file.close()
    return probe.returncode == 0
