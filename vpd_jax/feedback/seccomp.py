"""Seccomp filters: no new processes (both modes), and more in the fallback.

Why: as root, bubblewrap maps the sandbox's uid to root outside, and the
kernel exempts root from RLIMIT_NPROC, so the rlimit alone cannot stop a
fork bomb there. LiveCodeBench's own guard disables `os.fork` and
`subprocess` as well; this does it in the kernel, for any code path
(ctypes, `_posixsubprocess`, C extensions, raw machine code).

Classic BPF programs:
  another architecture's syscall ABI      -> the process is killed
    (int 0x80 on x86_64 reaches the i386 table, whose numbers the rest of
    the filter does not check: allowing it would allow everything)
  x32 system calls                        -> EPERM
  clone3 (flags behind a pointer)         -> ENOSYS, so libc falls back
                                             to clone for threads
  fork, vfork, clone without CLONE_THREAD -> EPERM
  fallback only (no namespaces there): execve, execveat (a fresh
    interpreter would shed the audit hook), socket, io_uring_setup (its
    ops bypass seccomp), System V and POSIX IPC objects (they outlive the
    program)                              -> EPERM
  anything else                           -> allowed

bwrap loads its program from `--seccomp FD`; the fallback harness installs
its own with prctl before the program runs.
"""

from __future__ import annotations

import os
import struct

_LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45  # BPF_JMP | op | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38

# machine -> AUDIT_ARCH and syscall numbers; arm64 has no fork or vfork.
_ARCHES = {
    "x86_64": dict(arch=0xC000003E, clone=56, clone3=435, fork=57, vfork=58,
                   execve=59, execveat=322, socket=41, io_uring_setup=425,
                   shmget=29, semget=64, msgget=68, mq_open=240),
    "aarch64": dict(arch=0xC00000B7, clone=220, clone3=435, execve=221,
                    execveat=281, socket=198, io_uring_setup=425,
                    shmget=194, semget=190, msgget=186, mq_open=180),
}
_NO_FORK = ("fork", "vfork")
_FALLBACK = _NO_FORK + ("execve", "execveat", "socket", "io_uring_setup",
                        "shmget", "semget", "msgget", "mq_open")


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def _program(machine: str | None, denied: tuple[str, ...]) -> bytes | None:
    spec = _ARCHES.get(machine or os.uname().machine)
    if spec is None:
        return None
    # Straight-line layout; the four return instructions are the last ones.
    body = []  # (code, k, target_if_true, target_if_false) with labels
    body.append((_LD_ABS_W, 4, None, None))           # A = arch
    body.append((_JEQ, spec["arch"], "next", "kill"))
    body.append((_LD_ABS_W, 0, None, None))           # A = syscall number
    body.append((_JGE, _X32_BIT, "eperm", "next"))
    body.append((_JEQ, spec["clone3"], "enosys", "next"))
    for name in denied:
        if name in spec:
            body.append((_JEQ, spec[name], "eperm", "next"))
    body.append((_JEQ, spec["clone"], "next", "allow"))
    body.append((_LD_ABS_W, 16, None, None))          # A = low word of flags
    body.append((_JSET, _CLONE_THREAD, "allow", "eperm"))
    labels = {"allow": len(body), "eperm": len(body) + 1,
              "enosys": len(body) + 2, "kill": len(body) + 3}
    out = []
    for pc, (code, k, jt, jf) in enumerate(body):
        if jt is None:
            out.append(_ins(code, k))
            continue
        rel = lambda label: 0 if label == "next" else labels[label] - pc - 1
        out.append(_ins(code, k, rel(jt), rel(jf)))
    out.append(_ins(_RET, _ALLOW))
    out.append(_ins(_RET, _ERRNO | _EPERM))
    out.append(_ins(_RET, _ERRNO | _ENOSYS))
    out.append(_ins(_RET, _KILL_PROCESS))
    return b"".join(out)


def no_fork_filter(machine: str | None = None) -> bytes | None:
    """bwrap's program as bytes, or None on an architecture not listed."""
    return _program(machine, _NO_FORK)


def fallback_filter(machine: str | None = None) -> bytes | None:
    """The fallback harness's program (also no exec, sockets or IPC)."""
    return _program(machine, _FALLBACK)
