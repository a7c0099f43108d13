"""The fallback mode's private uids, and the cleanup after each test.

Without bubblewrap, a grader running as root gives each worker slot a uid
of its own (never root, never shared with another grader: the range is
offset by the grader's pid). The harness drops to it before any program
code runs, so the program cannot raise its rlimits, signal the grader,
or write where root may; RLIMIT_NPROC counts that uid's processes alone;
and after the test every process of that uid is killed and every file it
left in a world-writable directory removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import time

UID_BASE = 1_000_000
UIDS_PER_PROCESS = 64
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def slot_uid(slot: int) -> int:
    if not 0 <= slot < UIDS_PER_PROCESS:
        raise ValueError(f"worker slot {slot} out of range "
                         f"[0, {UIDS_PER_PROCESS})")
    return UID_BASE + (os.getpid() % 4_000_000) * UIDS_PER_PROCESS + slot


def others_can_reach(path: str) -> bool:
    """Whether an unprivileged uid can walk to `path` (o+x on every dir)."""
    parts = os.path.realpath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        try:
            mode = os.stat(os.sep.join(parts[:i])).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def import_dir_fds(dirs: list[str]) -> dict[str, int]:
    """Directory fds for the dirs a slot uid cannot walk to.

    The interpreter may live under a directory closed to other users (pyenv
    under /root, mode 0700). The harness, already running as the slot uid,
    imports through /proc/self/fd/N instead: that magic link reaches the
    directory without walking the closed path.
    """
    return {d: os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for d in dirs if os.path.isdir(d) and not others_can_reach(d)}


def _uid_and_state(pid: str) -> tuple[int, bytes] | None:
    uid = state = None
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"State:"):
                    state = line.split()[1]
                elif line.startswith(b"Uid:"):
                    uid = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        return None
    return None if uid is None else (uid, state or b"?")


def kill_uid(uid: int) -> None:
    """Kills every live process whose real uid is `uid`.

    Reads /proc rather than calling kill(-1) as that uid, so only processes
    verified to carry this slot's private uid can ever be signalled.
    """
    if uid < UID_BASE:
        raise ValueError(f"refusing to kill processes of uid {uid}")
    for _ in range(50):  # a fork bomb may spawn while we sweep; NPROC caps it
        found = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            info = _uid_and_state(pid)
            if info is None or info[0] != uid or info[1] == b"Z":
                continue
            found = True
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not found:
            return
        time.sleep(0.002)


def remove_uid_files(uid: int) -> None:
    """Removes what `uid` left at the top of world-writable directories."""
    for root in _WORLD_WRITABLE:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
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
