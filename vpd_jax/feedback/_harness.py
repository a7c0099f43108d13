"""Runs one program on one test inside the sandbox (a fresh interpreter).

This file is executed as a script (`python -s -S -B _harness.py`, with
PYTHONHASHSEED fixed by the parent's environment, which is why not -I), never
imported by the package, so it uses the standard library only and starts in
a few milliseconds. The parent passes:

  fd 0  the test's stdin (stdin tests) or an empty file;
  fd 1  stdout file, fd 2 stderr file (size capped by RLIMIT_FSIZE);
  argv[1]  fd of the job (marshal): code, mode, func_name, parsed args,
           limits, token, uid...;
  argv[2]  fd of the result channel: one JSON frame written at the end;
  argv[3]  fd of the start marker: one byte once the sandbox is set up and
           the program is about to run, then closed, so the parent can tell
           a sandbox that failed to start (an error of ours) from a program
           that died (a verdict), and the program cannot fake either.

Before the program runs, the harness confines itself as the job says: it
joins its slot's pids cgroup (bwrap as root), drops to the slot's uid
(fallback as root), sets its rlimits, and (fallback) applies Landlock and
the seccomp filter (seccomp.py) through ctypes; bwrap mode's filter is
bwrap's own.

Why a separate channel: a stdin program's verdict is decided from stdout
alone, and a functional program's return value travels on the result fd as
a typed, tagged encoding of builtin values only, decoded and compared by
the parent.
Nothing the program prints can fake it, and no object of the program's is
ever compared (a custom `__eq__` is never called).

LiveCodeBench prepends `from typing import *`, `from collections import *`
and other star imports to every program. Importing all of them costs ~40 ms
per test, so those names resolve lazily here: the parent sends a table name
-> module, and the program's builtins are a dict whose `__missing__` imports
the module on first use. A program sees the same names bound to the same
objects as with LiveCodeBench's header.
"""

import builtins
import marshal
import os
import resource
import sys

_FILENAME = "solution.py"



def _read_job(job_fd):
    """The job is marshal data from the parent (trusted direction only):

    `json` would import `re`, `enum` and `functools`, ~25 ms of a ~20 ms
    interpreter start, on every test.
    """
    with os.fdopen(job_fd, "rb") as f:
        return marshal.loads(f.read())


_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"'})
# Lone surrogates (a str may hold them) would not encode as UTF-8.
_ESCAPES.update({i: f"\\u{i:04x}" for i in range(0xD800, 0xE000)})


def _to_json(value):
    """JSON text of str/bool/None/list/dict-of-str (the result frame only)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is str:
        return '"' + value.translate(_ESCAPES) + '"'
    if type(value) is int:
        return str(value)
    if type(value) is list:
        return "[" + ",".join(_to_json(v) for v in value) + "]"
    if type(value) is dict:
        return "{" + ",".join(_to_json(k) + ":" + _to_json(v)
                              for k, v in value.items()) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")


def _set_limits(limits):
    """Limits on this very process before any program code runs (soft = hard)."""
    cpu = int(limits["cpu_s"])
    pairs = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU, then SIGKILL
        (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
        (resource.RLIMIT_FSIZE, (limits["output_bytes"],) * 2),
        (resource.RLIMIT_NPROC, (limits["nproc"],) * 2),
        (resource.RLIMIT_NOFILE, (limits["nofile"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_STACK, (limits["stack_bytes"],) * 2),
    ]
    for which, value in pairs:
        if value[0] is None:
            continue
        try:
            resource.setrlimit(which, value)
        except (ValueError, OSError):
            # A hard limit already lower than ours (set by an admin): keep it.
            soft, hard = resource.getrlimit(which)
            resource.setrlimit(which, (min(value[0], hard), hard))


_LANDLOCK_FILE = (1 << 0) | (1 << 1) | (1 << 2)  # execute, write, read
_LANDLOCK_READ_DIR = (1 << 0) | (1 << 2) | (1 << 3)  # + read_dir
_LANDLOCK_LIST = 1 << 3  # read_dir alone: names, not contents
_LANDLOCK_TRUNCATE = 1 << 14


def _syscall(libc, ctypes, number, *args):
    result = libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"syscall {number}: {os.strerror(errno)}")
    return result


def _landlock_ruleset(confine):
    """Fallback mode: a Landlock ruleset (built before the uid drop, so
    paths the slot uid cannot walk to still open): the interpreter's and the
    system's trees read-only, the private temp dir read-write, nothing else
    at all: no test data, no /proc of other processes, no /run/lock, and
    (ABI 4+) no TCP, (ABI 6+) no signals out of the sandbox."""
    abi = confine["landlock_abi"]
    if not abi:
        return None
    import ctypes
    import stat
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    fs = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (
        _LANDLOCK_TRUNCATE if abi >= 3 else 0)
    fields = [fs] + ([3] if abi >= 4 else []) + ([3] if abi >= 6 else [])
    attr = struct.pack(f"<{len(fields)}Q", *fields)
    ruleset = _syscall(libc, ctypes, 444, attr, ctypes.c_size_t(len(attr)),
                       ctypes.c_uint32(0))
    files = _LANDLOCK_FILE | (_LANDLOCK_TRUNCATE if abi >= 3 else 0)
    rules = ([(p, _LANDLOCK_LIST) for p in confine["list_dirs"]]
             + [(p, _LANDLOCK_READ_DIR) for p in confine["read_dirs"]]
             + [(p, files) for p in confine["read_files"]]
             + [(confine["workdir"], fs)])
    for path, access in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a root that is not on this machine
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                access &= files  # a file takes file rights only
            rule = struct.pack("<Qi", access, fd)
            _syscall(libc, ctypes, 445, ruleset, ctypes.c_int(1), rule,
                     ctypes.c_uint32(0))
        finally:
            os.close(fd)
    return ruleset


def _confine(confine, ruleset):
    """Fallback mode, after the uid drop: no new privileges, the Landlock
    domain, then the seccomp filter (seccomp.py). Both are the kernel's:
    neither a fresh interpreter nor raw syscalls shed them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    ulong = ctypes.c_ulong
    if libc.prctl(38, ulong(1), ulong(0), ulong(0), ulong(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if ruleset is not None:
        _syscall(libc, ctypes, 446, ctypes.c_int(ruleset), ctypes.c_uint32(0))
        os.close(ruleset)
    program = confine["seccomp"]
    if program:
        class Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        buf = ctypes.create_string_buffer(program, len(program))
        fprog = Fprog(len(program) // 8, ctypes.addressof(buf))
        if libc.prctl(22, ulong(2), ctypes.byref(fprog), ulong(0),
                      ulong(0)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def _drop_privileges(uid):
    """Fallback mode as root: become a per-slot uid nobody else uses."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


class _LazyBuiltins(dict):
    """Builtins plus LiveCodeBench's star-import names, imported on first use."""

    def __init__(self, table):
        super().__init__(vars(builtins))
        self._table = table

    def __missing__(self, name):
        spec = self._table.get(name)
        if spec is None:
            raise KeyError(name)
        module_name, attr = spec
        module = __import__(module_name)
        value = module if attr is None else getattr(module, attr)
        self[name] = value
        return value


def _install_audit_guard():
    """Fallback mode: no namespaces, so refuse sockets, ctypes and processes.

    Audit hooks cannot be removed once added. ctypes may load libraries
    (numpy does), but not look up the libc functions that would do the same
    things behind these events' back. New processes are refused as
    LiveCodeBench's guard does (bwrap mode refuses them with seccomp);
    RLIMIT_NPROC on the slot's own uid backs this up in the kernel.
    """
    blocked = ("socket.connect", "socket.bind", "socket.sendto",
               "socket.sendmsg", "socket.getaddrinfo", "os.fork",
               "os.forkpty", "os.system", "os.posix_spawn", "subprocess.Popen")
    blocked_symbols = ("socket", "connect", "bind", "sendto", "sendmsg",
                       "fork", "vfork", "clone", "clone3", "syscall",
                       "execve", "execv", "execvp", "posix_spawn", "system",
                       "popen", "unshare", "setns")

    def hook(event, args):
        if event in blocked or (event == "ctypes.dlsym" and len(args) > 1
                                and args[1] in blocked_symbols):
            raise PermissionError(f"{event} is not allowed in the sandbox")

    sys.addaudithook(hook)


def _encode(value, depth=0):
    """Tagged JSON of builtin values; anything else is refused, never compared."""
    if depth > 200:
        raise TypeError("return value nested too deeply")
    kind = type(value)
    if value is None:
        return ["none"]
    if kind is bool:
        return ["bool", "1" if value else "0"]
    if kind is int:
        return ["int", hex(value)]  # hex: no int->str digit limit
    if kind is float:
        return ["float", value.hex()]
    if kind is str:
        return ["str", value]
    if kind in (list, tuple, set, frozenset):
        tag = kind.__name__
        return [tag, [_encode(v, depth + 1) for v in value]]
    if kind is dict:
        return ["dict", [[_encode(k, depth + 1), _encode(v, depth + 1)]
                         for k, v in value.items()]]
    raise TypeError(f"returned a {kind.__module__}.{kind.__qualname__}, "
                    f"which is not a JSON-like builtin value")


def _frames(tb, filename, lines):
    """[line, function, source] of traceback frames in the program's code.

    Walked by hand: the traceback and linecache modules would cost imports,
    and the program's source is right here.
    """
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename:
            lineno = tb.tb_lineno
            text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
            out.append([lineno, code.co_name, text[:200]])
        tb = tb.tb_next
    return out[-20:]


def _run(job):
    code_text = job["code"]
    scope = {"__name__": "__main__", "__file__": _FILENAME,
             "__builtins__": _LazyBuiltins(job["header_names"])}
    code = compile(code_text, _FILENAME, "exec")
    try:
        exec(code, scope)
    except SystemExit:
        # LiveCodeBench swallows SystemExit: the output so far is judged.
        if job["mode"] == "functional":
            return {"status": "exception", "exc_type": "SystemExit",
                    "exc_msg": "sys.exit() called while defining the solution",
                    "frames": []}
        return {"status": "ok"}
    if job["mode"] == "stdin":
        return {"status": "ok"}
    solution_cls = scope.get("Solution")
    if solution_cls is None:
        return {"status": "no_solution", "exc_msg": "no class Solution defined"}
    method = getattr(solution_cls(), job["func_name"], None)
    if method is None:
        return {"status": "no_solution",
                "exc_msg": f"class Solution has no method {job['func_name']}"}
    value = method(*job["args"])
    try:
        return {"status": "ok", "value": _encode(value)}
    except (TypeError, RecursionError) as e:
        return {"status": "bad_value", "exc_msg": str(e)}


def main():
    if not getattr(sys.flags, "safe_path", False):
        del sys.path[0]  # this script's directory: what -I's -P would drop
    job_fd, result_fd, started_fd = map(int, sys.argv[1:4])
    job = _read_job(job_fd)
    if job["cgroup_fd"] is not None:  # bwrap as root: the slot's pids cap
        os.write(job["cgroup_fd"], b"0")
        os.close(job["cgroup_fd"])
    sys.setrecursionlimit(job["recursion_limit"])
    confine = job["confine"]
    ruleset = _landlock_ruleset(confine) if confine else None
    if job["uid"] is not None:
        _drop_privileges(job["uid"])
    _set_limits(job["limits"])
    if confine:
        _confine(confine, ruleset)
    if job["audit_guard"]:
        _install_audit_guard()
    sys.path.extend(job["site_paths"])
    # Directories this uid cannot walk to are reached through inherited fds.
    sys.path[:] = [f"/proc/self/fd/{job['path_fds'][p]}"
                   if p in job["path_fds"] else p for p in sys.path]
    os.write(started_fd, b"1")
    os.close(started_fd)
    try:
        result = _run(job)
    except SyntaxError as e:
        result = {"status": "compile_error", "exc_type": type(e).__name__,
                  "exc_msg": f"line {e.lineno}: {e.msg}", "frames": []}
    except BaseException as e:  # the program's failure, reported, not re-raised
        result = {"status": "exception", "exc_type": type(e).__name__,
                  "exc_msg": _safe_str(e), "frames": _frames(e.__traceback__, _FILENAME,
                                                   job["code"].splitlines())}
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    result["token"] = job["token"]
    try:
        data = _to_json(result).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        data = _to_json({"token": job["token"], "status": "exception",
                         "exc_type": type(e).__name__, "exc_msg": str(e),
                         "frames": []}).encode()
    if len(data) > job["record_bytes"]:  # the parent refuses it unread
        data = _to_json({"token": job["token"], "status": "bad_value",
                         "exc_msg": f"the result is {len(data)} bytes when "
                                    f"encoded, over the grader's "
                                    f"{job['record_bytes']}"}).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(result_fd, view):]
    # os._exit: no atexit hook or leftover thread of the program runs after.
    os._exit(0)


def _safe_str(e):
    try:
        return str(e)[:1000]
    except BaseException:
        return "<unprintable exception>"


if __name__ == "__main__":
    main()
