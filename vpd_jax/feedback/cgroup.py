"""A pids cgroup per worker slot: a task cap the kernel enforces for root.

Why: bwrap started by root maps the sandbox's uid to root outside, and the
kernel exempts root from RLIMIT_NPROC, so a program could start hundreds
of threads. Where bwrap cannot run as the slot's own uid, the grader makes
one cgroup per slot with `pids.max` and hands the harness an fd of its
`cgroup.procs`, opened here; the harness writes "0" to it (itself) before
any program code runs, so every thread and process the program makes is
counted there. cgroup v2 where its pids controller is enabled, else the v1
pids hierarchy; None where neither is writable (reported by describe()).
"""

from __future__ import annotations

import atexit
import os
import threading

_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified")
_made: list[str] = []
_fds: dict[int, int | None] = {}
_lock = threading.Lock()


def _pids_root() -> str | None:
    for root in _ROOTS:
        if not os.path.exists(os.path.join(root, "cgroup.procs")):
            continue
        v2 = os.path.exists(os.path.join(root, "cgroup.controllers"))
        if v2:
            try:
                with open(os.path.join(root, "cgroup.subtree_control")) as f:
                    if "pids" not in f.read().split():
                        continue
            except OSError:
                continue
        elif not os.path.exists(os.path.join(root, "pids.max")) and not \
                os.path.basename(root) == "pids":
            continue
        if os.access(root, os.W_OK):
            return root
    return None


def available() -> bool:
    return _pids_root() is not None


def procs_fd(slot: int, max_tasks: int) -> int | None:
    """A write fd of `cgroup.procs` of this slot's pids cgroup (made on first
    use, kept for the process's life), or None where the host offers none."""
    with _lock:
        if slot in _fds:
            return _fds[slot]
        root = _pids_root()
        fd = None
        if root is not None:
            path = os.path.join(root, f"vpd-grader-{os.getpid()}-{slot}")
            try:
                os.makedirs(path, exist_ok=True)
                _made.append(path)
                with open(os.path.join(path, "pids.max"), "w") as f:
                    f.write(str(max_tasks))
                fd = os.open(os.path.join(path, "cgroup.procs"),
                             os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                fd = None
        _fds[slot] = fd
        return fd


@atexit.register
def _remove() -> None:
    for path in _made:
        try:
            os.rmdir(path)  # empty once its runs are over
        except OSError:
            pass
