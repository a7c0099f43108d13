"""A pids cgroup per worker slot: a task cap the kernel enforces for root.

Why: bwrap started by root maps the sandbox's uid to root outside, and the
kernel exempts root from RLIMIT_NPROC, so a program could start hundreds
of threads. Where bwrap cannot run as the slot's own uid, each slot gets a
cgroup whose `pids.max` caps the tasks of its runs. Two ways in:

* pinned (cgroup v1, whose `tasks` file moves one thread): a pool's worker
  thread, which does nothing but grade, moves itself into its slot's
  cgroup once; every sandbox it spawns is born there. Free per test.
* per run (cgroup v2, or a thread that is not pinned): the grader hands the
  harness a write fd of `cgroup.procs`, and the harness moves itself there
  before any program code runs. A migration costs ~15 ms on cgroup v1.

None of this where no pids hierarchy is writable (describe() says so).
"""

from __future__ import annotations

import atexit
import os
import threading
import time

_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified")
# A pinned slot's cgroup also holds the grading thread and bwrap's two
# processes besides the program's own tasks.
_PINNED_EXTRA = 3
_made: list[str] = []
_fds: dict[int, int | None] = {}
_lock = threading.Lock()
_local = threading.local()


def _pids_root() -> tuple[str, bool] | None:
    """(root, is_v2) of a writable pids hierarchy, or None."""
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
        elif os.path.basename(root) != "pids":
            continue
        if os.access(root, os.W_OK):
            return root, v2
    return None


def available() -> bool:
    return _pids_root() is not None


def _remove_stale(root: str) -> None:
    """Removes the empty cgroups of graders that died without cleaning up
    (killed): named after their pid, which no longer runs."""
    for name in os.listdir(root):
        parts = name.split("-")
        if name.startswith("vpd-grader-") and parts[2].isdigit() and \
                not os.path.exists(f"/proc/{parts[2]}"):
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:
                pass


def _make(name: str, max_tasks: int) -> str:
    root, _ = _pids_root()
    with _lock:
        if not _made:
            _remove_stale(root)
    path = os.path.join(root, f"vpd-grader-{os.getpid()}-{name}")
    os.makedirs(path, exist_ok=True)
    with _lock:
        if path not in _made:
            _made.append(path)
    with open(os.path.join(path, "pids.max"), "w") as f:
        f.write(str(max_tasks))
    return path


def pin_thread(slot: int, max_tasks: int) -> bool:
    """Moves the calling thread (a dedicated grading thread) into slot's
    cgroup for good; False where only per-run joining is possible."""
    found = _pids_root()
    if found is None or found[1]:
        return False
    try:
        path = _make(f"{slot}-pinned", max_tasks + _PINNED_EXTRA)
        with open(os.path.join(path, "tasks"), "w") as f:
            f.write(str(threading.get_native_id()))
    except OSError:
        return False
    _local.slot = slot
    return True


def pinned(slot: int) -> bool:
    return getattr(_local, "slot", None) == slot


def procs_fd(slot: int, max_tasks: int) -> int | None:
    """A write fd of `cgroup.procs` of this slot's cgroup (made on first
    use, kept for the process's life), or None where the host offers none."""
    with _lock:
        if slot in _fds:
            return _fds[slot]
    fd = None
    if _pids_root() is not None:
        try:
            path = _make(str(slot), max_tasks)
            fd = os.open(os.path.join(path, "cgroup.procs"),
                         os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            fd = None
    with _lock:
        kept = _fds.setdefault(slot, fd)
    if fd is not None and kept != fd:  # another thread made it first
        os.close(fd)
    return kept


@atexit.register
def _remove() -> None:
    """Removes our cgroups. A joined thread's task may outlive its join by a
    moment (the cgroup is busy until it is gone), hence a few tries."""
    for path in _made:
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.005)
