"""The fallback mode's private uids, and the cleanup after each test.

Without bubblewrap, a grader running as root gives each worker slot a uid
of its own (never root, never shared with another grader: the range is
offset by the grader's pid). The harness drops to it before any program
code runs, so the program cannot raise its rlimits, signal the grader,
or write where root may; RLIMIT_NPROC counts that uid's processes alone;
and after the test every process of that uid is killed (zombie leaders
whose threads live on included) and every file it left in a world-writable
directory removed. (With Landlock, which the harness applies, it can write
nowhere but its temp dir; the sweep is for kernels without it.) The temp
dir is removed by `remove_tree`, iterative and unable to raise, whatever
depth or modes the program left there.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import time

UID_BASE = 1_000_000
UIDS_PER_PROCESS = 64
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock",
                   "/dev/mqueue")


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


def _real_uid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _alive(pid: str) -> bool:
    """Whether any thread of the process still runs. A zombie leader whose
    main thread left by the raw exit syscall keeps its other threads: only
    its task list tells."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            return True
    return False


def kill_uid(uid: int) -> None:
    """Kills every process whose real uid is `uid`, zombies included.

    Reads /proc rather than calling kill(-1) as that uid, so only processes
    verified to carry this slot's private uid can ever be signalled. A
    process counts as gone only when none of its threads runs.
    """
    if uid < UID_BASE:
        raise ValueError(f"refusing to kill processes of uid {uid}")
    for _ in range(50):  # a fork bomb may spawn while we sweep; NPROC caps it
        found = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or _real_uid(pid) != uid:
                continue
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                continue
            found = found or _alive(pid)
        if not found:
            return
        time.sleep(0.002)


def remove_tree(path: str) -> None:
    """Removes a directory tree of any depth; never raises.

    Iterative, one directory fd open at a time (a 3,000-level tree would
    exhaust recursion or fds), never following symlinks, and making each
    directory writable first (the program may have made it read-only).
    Whatever still cannot go is left and logged, never raised.
    """
    names: list[str] = []  # path from the root to the current dir
    try:
        os.chmod(path, 0o700)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        for _ in range(1_000_000):  # bounded: each pass removes an entry
            child = None
            for entry in os.scandir(fd):
                if entry.is_dir(follow_symlinks=False):
                    child = entry.name
                    break
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except OSError:
                    pass
            if child is not None:
                try:
                    os.chmod(child, 0o700, dir_fd=fd)
                except OSError:
                    pass
                sub = os.open(child, os.O_RDONLY | os.O_DIRECTORY |
                              os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = sub
                names.append(child)
                continue
            if not names:
                break
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
        os.close(fd)
        fd = -1
        os.rmdir(path)
    except OSError as e:
        print(f"vpd_jax.feedback: could not remove {path}: {e}",
              file=sys.stderr, flush=True)
    finally:
        if fd >= 0:
            os.close(fd)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where it has none."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        version = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0),
                               ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(0, version)


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
                    remove_tree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass
