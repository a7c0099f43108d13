"""The bubblewrap command line of the isolated mode.

Every namespace is unshared (user, pid, net, ipc, uts, cgroup): no network,
and the sandbox's PID 1 is bwrap's reaper, so killing bwrap ends every
process the program started. Only the system directories and the
interpreter's own tree are visible, read-only; /tmp is a small private
tmpfs; capabilities are dropped; `--die-with-parent` ties the sandbox to the
grader; a seccomp filter (seccomp.py) refuses new processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from vpd_jax.feedback import seccomp

TMP_SIZE = 64 << 20  # bytes of the private /tmp (a tmpfs: memory)
HARNESS_INSIDE = "/run/harness.py"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def _binds(extra_dirs: list[str]) -> list[str]:
    roots = list(_SYSTEM_DIRS)
    roots += [os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)]
    roots += [os.path.realpath(d) for d in extra_dirs]
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


def prefix(harness: str, extra_dirs: list[str]) -> list[str]:
    """bwrap and its options, up to the command (`--seccomp FD` goes last)."""
    return [shutil.which("bwrap") or "bwrap", "--unshare-all",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            *_binds(extra_dirs), "--ro-bind", harness, HARNESS_INSIDE,
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(TMP_SIZE), "--tmpfs", "/tmp", "--chdir", "/tmp"]


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


def available(interpreter: str, harness: str) -> bool:
    """Whether bwrap runs here with our options (it fails in some containers)."""
    if shutil.which("bwrap") is None:
        return False
    filter_file = seccomp_file()
    fds = [filter_file.fileno()] if filter_file else []
    extra = ["--seccomp", str(fds[0])] if fds else []
    try:
        probe = subprocess.run(
            prefix(harness, []) + extra + [interpreter, "-I", "-S", "-c",
                                           "pass"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
            pass_fds=fds)
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        if filter_file:
            filter_file.close()
    return probe.returncode == 0
