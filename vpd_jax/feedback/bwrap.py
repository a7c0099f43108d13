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


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def split_dirs(extra_dirs: list[str]) -> list[str]:
    """The dirs (of extra_dirs: the site dirs and sys.path) that hold our own
    package: a program may list them, but never read our entries there."""
    out = []
    for d in dict.fromkeys(map(os.path.realpath, extra_dirs)):
        try:
            if any(n.startswith(_OWN_PACKAGE) for n in os.listdir(d)):
                out.append(d)
        except OSError:
            pass
    return out


def hidden_entries(extra_dirs: list[str]) -> list[str]:
    """Our own package's entries in those dirs (package, dist-info, .pth,
    editable finder): its bundled data holds hidden tests."""
    return [os.path.join(d, n) for d in split_dirs(extra_dirs)
            for n in sorted(os.listdir(d)) if n.startswith(_OWN_PACKAGE)]


def _base_roots(extra_dirs: list[str]) -> list[str]:
    """The system dirs, the interpreter's prefixes and the site dirs, as
    given (a symlinked /bin stays a symlink), existing only, deduplicated."""
    roots = list(_SYSTEM_DIRS)
    roots += [os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)]
    roots += [d for d in map(os.path.realpath, extra_dirs) if os.path.isdir(d)]
    return [r for r in dict.fromkeys(roots) if os.path.lexists(r)]


def _expand(root: str, split: list[str]) -> list[str]:
    """root as a list of readable paths that covers it minus our entries of
    the split dirs under it: a root holding no split dir stays whole, one
    that does is replaced by its children, recursively along the way."""
    if os.path.islink(root):
        # A link to a dir holding a split dir (a venv's lib64 -> lib) would
        # grant it whole once resolved; its target is expanded on its own.
        real = os.path.realpath(root)
        return [] if any(_under(d, real) for d in split) else [root]
    if not any(_under(d, root) for d in split):
        return [root]
    out = []
    for name in sorted(os.listdir(root)):
        child = os.path.join(root, name)
        if root in split and name.startswith(_OWN_PACKAGE):
            continue
        out += _expand(child, split)
    return out


def visible_roots(extra_dirs: list[str], hide_in: list[str] = ()) -> list[str]:
    """What a program may read, as an allow-list (the fallback's Landlock
    rules): the system directories, the interpreter's prefixes and the site
    dirs, minus our own package wherever it is installed in them (a venv's
    prefix holds its site dir: the prefix is then granted child by child,
    so `pip install .` into a venv hides the package as well).
    `hide_in`: more dirs (sys.path) to look for our package in."""
    split = split_dirs(list(extra_dirs) + list(hide_in))
    out: list[str] = []
    for root in _base_roots(extra_dirs):
        out += _expand(root, split)
    return [r for r in dict.fromkeys(out) if os.path.lexists(r)]


def listable_dirs(extra_dirs: list[str], hide_in: list[str] = ()) -> list[str]:
    """The split dirs a program may list (names only, the fallback's Landlock
    rule): those inside what it may read anyway, never e.g. a checkout."""
    roots = [r for r in _base_roots(extra_dirs) if not os.path.islink(r)]
    return [d for d in split_dirs(list(extra_dirs) + list(hide_in)) if any(_under(d, r) for r in roots)]


def prefix(harness: str, extra_dirs: list[str], hide_in: list[str] = ()) -> list[str]:
    """bwrap and its options, up to the command (`--seccomp FD` goes last).

    Binds the few roots of `_base_roots` whole (each bind costs bwrap ~0.5 ms:
    binding a venv's site dir entry by entry, ~200 binds, made every test
    ~120 ms slower), then mounts over our own package's entries in them: an
    empty read-only tmpfs on a dir, /dev/null on a file. The sandbox has no
    capabilities, so it cannot unmount them. The tmpfs mounts come before
    the binds, so a bind below /tmp (a venv in a temp dir) is not hidden by
    the private /tmp."""
    args = [shutil.which("bwrap") or "bwrap", "--unshare-all",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(SHM_SIZE), "--tmpfs", "/dev/shm",
            "--size", str(TMP_SIZE), "--tmpfs", "/tmp"]
    roots = _base_roots(extra_dirs)
    for root in roots:
        if any(r != root and not os.path.islink(r) and _under(root, r) for r in roots):
            continue  # inside another bind already (a venv's site dir)
        if os.path.islink(root):  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(root), root]
        else:
            args += ["--ro-bind", root, root]
    args += ["--ro-bind", harness, HARNESS_INSIDE]
    for entry in hidden_entries(list(extra_dirs) + list(hide_in)):
        if not any(_under(entry, r) for r in roots if not os.path.islink(r)):
            continue  # not visible anyway
        if os.path.isdir(entry) and not os.path.islink(entry):
            args += ["--size", "4096", "--tmpfs", entry, "--remount-ro", entry]
        else:
            args += ["--ro-bind", "/dev/null", entry]
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
