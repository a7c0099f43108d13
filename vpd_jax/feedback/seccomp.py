"""A seccomp filter that forbids new processes but allows threads.

Why: as root, bubblewrap maps the sandbox's uid to root outside, and the
kernel exempts root from RLIMIT_NPROC, so the rlimit alone cannot stop a
fork bomb there. LiveCodeBench's own guard disables `os.fork` and
`subprocess` as well; this does it in the kernel, for any code path
(ctypes, `_posixsubprocess`, C extensions).

The program is classic BPF, handed to `bwrap --seccomp FD`:
  fork, vfork, clone without CLONE_THREAD -> EPERM
  clone3 (flags behind a pointer)        -> ENOSYS, so libc falls back
                                            to clone for threads
  x32 system calls                       -> EPERM
  anything else, or another architecture -> allowed
"""

from __future__ import annotations

import os
import struct

_LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45  # BPF_JMP | op | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38

# machine -> (AUDIT_ARCH, clone, clone3, fork, vfork); no fork on arm64.
_ARCHES = {
    "x86_64": (0xC000003E, 56, 435, 57, 58),
    "aarch64": (0xC00000B7, 220, 435, None, None),
}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def no_fork_filter(machine: str | None = None) -> bytes | None:
    """The BPF program as bytes, or None on an architecture not listed."""
    spec = _ARCHES.get(machine or os.uname().machine)
    if spec is None:
        return None
    arch, clone, clone3, fork, vfork = spec
    # Straight-line layout; the three return instructions are the last ones.
    body = []  # (code, k, target_if_true, target_if_false) with labels
    body.append((_LD_ABS_W, 4, None, None))           # A = arch
    body.append((_JEQ, arch, "next", "allow"))
    body.append((_LD_ABS_W, 0, None, None))           # A = syscall number
    body.append((_JGE, _X32_BIT, "eperm", "next"))
    body.append((_JEQ, clone3, "enosys", "next"))
    for nr in (fork, vfork):
        if nr is not None:
            body.append((_JEQ, nr, "eperm", "next"))
    body.append((_JEQ, clone, "next", "allow"))
    body.append((_LD_ABS_W, 16, None, None))          # A = low word of flags
    body.append((_JSET, _CLONE_THREAD, "allow", "eperm"))
    labels = {"allow": len(body), "eperm": len(body) + 1,
              "enosys": len(body) + 2}
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
    return b"".join(out)
