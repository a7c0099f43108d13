"""Issue 16's attacks on the sandbox's isolation, rows 4-11, each as the
model-written program that mounts it, graded through the real sandbox (or
the CLI), in both sandbox modes: the fallback's holes (rows 4-8) are run
under bwrap too, and bwrap's (rows 9-11) under the fallback too.

Row 4: test data unreadable.  Row 5: no network through a fresh process.
Row 6: no process survives.  Row 7: cleanup of any depth.  Row 8: no IPC
objects or lock files left.  Row 9: foreign-arch syscalls killed, tasks
capped.  Row 10: /dev/shm capped.  Row 11: the interpreter's own files
visible alike in both modes.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from test_feedback_attacks import REPO, fenced
from test_feedback_hostile import LIMITS, run_hostile, sandbox  # noqa: F401
from vpd_jax.feedback import Problem, TestCase, grade, start_server

def _world_readable_dir():
    import tempfile
    path = tempfile.mkdtemp(prefix="vpd-attack-data-")
    os.chmod(path, 0o755)
    return path


def _open_to_all(root: str) -> None:
    """Makes a fixture tree readable by the sandbox's slot uid."""
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)


def _accepted_in_both_modes(problem, code: str) -> None:
    """Grades code under bwrap (where available) and the fallback sandbox."""
    from vpd_jax.feedback import sandbox as sandbox_lib
    for mode in ("bwrap", "fallback"):
        if mode == "bwrap" and not sandbox_lib.bwrap_available():
            continue
        result = grade(problem, fenced(code), limits=LIMITS, sandbox=sandbox_lib.Sandbox(mode))
        assert result["verdict"] == "accepted", (mode, result["critique"])


STEAL = ("import json, os\n"
         "line = input().strip()\n"
         "args = open(f'/proc/{os.getppid()}/cmdline', 'rb').read()"
         ".split(b'\\0')\n"
         "path = args[args.index(b'--problems') + 1].decode()\n"
         "for row in map(json.loads, open(path)):\n"
         "    for t in json.loads(row['public_test_cases']):\n"
         "        if t['input'].strip() == line:\n"
         "            print(t['output'])")


@pytest.mark.parametrize("mode", ("bwrap", "fallback"))
def test_row4_program_cannot_read_the_problems_file(mode):
    """The problems path is in the grader's command line, the file is
    world-readable: reading it must still fail inside the sandbox."""
    import shutil
    from vpd_jax.feedback import sandbox as sandbox_lib
    from vpd_jax.feedback.problems import write_problems
    if mode == "bwrap" and not sandbox_lib.bwrap_available():
        pytest.skip("bubblewrap does not run on this machine")
    data = _world_readable_dir()
    try:
        problem = Problem("steal", "", "", "", "atcoder", "easy", "",
                          [TestCase("7 8\n", "15\n", "stdin"),
                           TestCase("123 456\n", "579\n", "stdin")], [],
                          None, {})
        problems = os.path.join(data, "problems.jsonl")
        write_problems(problems, [problem])
        os.chmod(problems, 0o644)
        solutions = os.path.join(data, "solutions.jsonl")
        with open(solutions, "w") as f:
            f.write(json.dumps({"question_id": "steal",
                                "code": fenced(STEAL)}) + "\n")
        out = os.path.join(data, "verdicts.jsonl")
        proc = subprocess.run(
            [sys.executable, "-m", "vpd_jax.feedback", "grade", "--problems",
             problems, "--solutions", solutions, "--out", out, "--workers",
             "1", "--time-limit", "2"], capture_output=True, text=True,
            cwd=REPO, timeout=120, env=dict(os.environ, VPD_SANDBOX=mode))
        assert proc.returncode == 0, proc.stderr
        row = json.loads(open(out).read())
        assert row["verdict"] == "runtime_error", row["critique"]
    finally:
        shutil.rmtree(data)


def test_row4_program_cannot_read_the_bundled_data(sandbox):
    code = ("import glob, os, sys\n"
            "repo = os.path.dirname(os.path.dirname(os.path.abspath("
            "sys.argv[0])))\n"
            "found = []\n"
            "for path in [os.path.join(repo, 'data', 'bundled', 'train.jsonl'),"
            f" {os.path.join(REPO, 'vpd_jax', 'data', 'bundled', 'train.jsonl')!r}]:\n"
            "    try:\n"
            "        found.append(len(open(path).read()))\n"
            "    except OSError as e:\n"
            "        pass\n"
            "print('read' if found else 'denied')")
    result = run_hostile(sandbox, code)
    assert result["verdict"] == "wrong_answer"
    assert "denied" in result["critique"], result["critique"]


def test_row5_a_fresh_interpreter_does_not_reach_the_network(sandbox):
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    connect = (f"import socket; socket.create_connection(('127.0.0.1', "
               f"{port}), 1).send(b'hi')")
    code = ("import os, sys\n"
            "try:\n"
            "    import _posixsubprocess\n"
            "    _posixsubprocess.fork_exec(['/usr/bin/python3', '-c', "
            f"{connect!r}], [b'/usr/bin/python3'], True, (), None, None,"
            " -1, -1, -1, -1, -1, -1, -1, -1, False, False, None, None, None,"
            " -1, None, False)\n"
            "except Exception as e:\n"
            "    pass\n"
            "for python in ('/usr/bin/python3', sys.executable):\n"
            "    try:\n"
            f"        os.execv(python, [python, '-c', {connect!r}])\n"
            "    except Exception:\n"
            "        pass")
    try:
        run_hostile(sandbox, code)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


def test_row6_no_process_survives_a_zombie_leader(sandbox):
    """A detached child whose main thread leaves by pthread_exit looks like
    a zombie while its other thread runs on; it must not survive, nor kill
    the next program in its slot."""
    code = ("import ctypes, os, threading, time\n"
            "libc = ctypes.CDLL(None)\n"
            "try:\n"
            "    pid = libc._Fork()\n"
            "except Exception:\n"
            "    pid = -1\n"
            "if pid == 0:\n"
            "    os.setsid()\n"
            "    def killer():\n"
            "        while True:\n"
            "            try:\n"
            "                os.kill(-1, 9)\n"
            "            except Exception:\n"
            "                pass\n"
            "            time.sleep(0.01)\n"
            "    time.sleep(1)\n"
            "    threading.Thread(target=killer).start()\n"
            "    libc.pthread_exit(None)\n"
            "time.sleep(1.3)  # the child's leader is a zombie by now\n"
            "print(1)")
    run_hostile(sandbox, code)  # asserts that nothing of its uid is left
    ok = grade(Problem("one", "", "", "", "atcoder", "easy", "",
                       [TestCase("1\n", "1\n", "stdin")], [], None, {}),
               fenced("print(input())"), limits=LIMITS, sandbox=sandbox)
    assert ok["verdict"] == "accepted"


def test_row6_sweep_kills_a_zombie_leaders_threads():
    from vpd_jax.feedback import fallback
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as a slot uid")
    uid = fallback.slot_uid(63)
    code = ("import ctypes, threading, time\n"
            "threading.Thread(target=time.sleep, args=(600,)).start()\n"
            "ctypes.CDLL(None).pthread_exit(None)")
    proc = subprocess.Popen(["/usr/bin/python3", "-c", code], user=uid,
                            group=uid, extra_groups=[], cwd="/")
    import time
    deadline = time.monotonic() + 5
    while not fallback._alive(str(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the main thread has left: the leader is a zombie
    fallback.kill_uid(uid)
    proc.wait(5)
    assert not fallback._alive(str(proc.pid))


def test_row7_a_3000_deep_directory_is_cleaned_up(sandbox):
    code = ("import os\n"
            "for _ in range(3000):\n"
            "    os.mkdir('d')\n"
            "    os.chdir('d')\n"
            "os.chmod('.', 0)\n"
            "print(1)")
    # 3000 path walks of up to 3000 components under Landlock cost ~1 s of
    # CPU on an idle core: the point here is the cleanup, not the limit.
    slow = dataclasses.replace(LIMITS, time_s=6.0, wall_s=12.0)
    assert run_hostile(sandbox, code, limits=slow, max_seconds=20.0)["verdict"] == "accepted"
    again = run_hostile(sandbox, "print(input())")
    assert again["verdict"] == "accepted"


def test_row8_no_ipc_objects_or_lock_files_left(sandbox):
    from test_feedback_hostile import MARKER, MY_UIDS
    lock = f"/run/lock/{MARKER}"
    code = ("import ctypes\n"
            "libc = ctypes.CDLL(None)\n"
            "for _ in range(3):\n"
            "    libc.shmget(0, 1 << 20, 0o1666)\n"
            "    libc.semget(0, 1, 0o1666)\n"
            "    libc.msgget(0, 0o1666)\n"
            "try:\n"
            f"    open({lock!r}, 'w').write('x')\n"
            "except OSError:\n"
            "    pass\n"
            "print(1)")
    run_hostile(sandbox, code)
    assert not os.path.exists(lock)
    for kind in ("shm", "sem", "msg"):
        with open(f"/proc/sysvipc/{kind}") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        header = open(f"/proc/sysvipc/{kind}").readline().split()
        uid_col = header.index("uid")
        assert not [r for r in rows if int(r[uid_col]) in MY_UIDS], kind


# Rows 9-11: bubblewrap (each also run under the fallback).

@pytest.mark.skipif(os.uname().machine != "x86_64", reason="i386 ABI")
def test_row9_foreign_arch_syscall_is_killed(sandbox):
    # mov eax, 2 (i386 fork); int 0x80; ret
    code = ("import ctypes, mmap\n"
            "page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE"
            " | mmap.PROT_EXEC)\n"
            "page.write(b'\\xb8\\x02\\x00\\x00\\x00\\xcd\\x80\\xc3')\n"
            "addr = ctypes.addressof(ctypes.c_char.from_buffer(page))\n"
            "pid = ctypes.CFUNCTYPE(ctypes.c_int)(addr)()\n"
            "print('forked', pid)")
    result = run_hostile(sandbox, code)
    assert result["verdict"] == "runtime_error", result["critique"]
    assert "SIGSYS" in result["critique"]


# 300 threads with small stacks: RLIMIT_AS alone would let them all start.
THREAD_BOMB = ("import threading, time\n"
               "threading.stack_size(64 << 10)\n"
               "n = 0\n"
               "try:\n"
               "    for _ in range(300):\n"
               "        threading.Thread(target=time.sleep, args=(2,)).start()\n"
               "        n += 1\n"
               "except RuntimeError:\n"
               "    pass\n"
               f"print('capped' if n <= {LIMITS.nproc} else 'uncapped', n)")


def test_row9_threads_are_capped(sandbox):
    result = run_hostile(sandbox, THREAD_BOMB)
    assert "capped" in result["critique"]
    assert "uncapped" not in result["critique"], result["critique"]


def test_row10_dev_shm_is_capped(sandbox):
    code = ("n = 0\n"
            "try:\n"
            "    for i in range(100):\n"
            "        with open(f'/dev/shm/fill{i}', 'wb') as f:\n"
            "            f.write(b'x' * (512 << 10))\n"
            "        n += 1\n"
            "except OSError:\n"
            "    pass\n"
            "print('filled' if n == 100 else 'stopped')")
    result = run_hostile(sandbox, code)
    assert "stopped" in result["critique"], result["critique"]


def test_row11_a_venv_under_the_temp_dir_stays_visible(monkeypatch):
    """Both modes grade `import` of a package in the interpreter's site dir
    alike, even when that dir lives under /tmp."""
    import shutil
    from vpd_jax.feedback import sandbox as sandbox_lib
    site = _world_readable_dir()
    try:
        with open(os.path.join(site, "vpd_probe_mod.py"), "w") as f:
            f.write("VALUE = 41\n")
        os.chmod(os.path.join(site, "vpd_probe_mod.py"), 0o644)
        paths = sandbox_lib.site_paths() + [site]
        monkeypatch.setattr(sandbox_lib, "site_paths", lambda: paths)
        one = Problem("one", "", "", "", "atcoder", "easy", "",
                      [TestCase("1\n", "42\n", "stdin")], [], None, {})
        for mode in ("bwrap", "fallback"):
            if mode == "bwrap" and not sandbox_lib.bwrap_available():
                continue
            box = sandbox_lib.Sandbox(mode)
            result = grade(one, fenced("import vpd_probe_mod\n"
                                       "print(vpd_probe_mod.VALUE + 1)"),
                           limits=LIMITS, sandbox=box)
            assert result["verdict"] == "accepted", (mode, result["critique"])
    finally:
        shutil.rmtree(site)


def test_row11_both_modes_import_the_graders_numpy(sandbox):
    """The venv may be reached through a symlink (.venv -> a shared one):
    bwrap binds its real path, and the program's sys.path must match."""
    pytest.importorskip("numpy")
    one = Problem("one", "", "", "", "atcoder", "easy", "",
                  [TestCase("1\n", "10\n", "stdin")], [], None, {})
    result = grade(one, fenced("import numpy\nprint(numpy.arange(5).sum())"),
                   limits=LIMITS, sandbox=sandbox)
    assert result["verdict"] == "accepted", result["critique"]


def test_row9_the_server_caps_threads_and_leaks_no_task_slot(sandbox):
    """Through the server (its grading threads stay in their slot's cgroup
    when bwrap runs as root), the cap holds, and orphaned sandbox inits are
    reaped, so the slot's task count does not creep up run after run."""
    one = Problem("one", "", "", "", "atcoder", "easy", "",
                  [TestCase("1\n", "1\n", "stdin")], [], None, {})
    env = dict(os.environ, VPD_SANDBOX=sandbox.mode)
    with start_server(workers=1, env=env) as handle:
        client = handle.client(retries=0)
        critique = client.grade_batch([(one, fenced(THREAD_BOMB))],
                                      LIMITS)[0]["critique"]
        assert "capped" in critique and "uncapped" not in critique, critique
        verdicts = [client.grade_batch([(one, fenced("print(input())"))],
                                       LIMITS)[0]["verdict"]
                    for _ in range(LIMITS.nproc + 4)]
    assert verdicts == ["accepted"] * (LIMITS.nproc + 4)


def test_row4_our_package_installed_in_site_packages_stays_hidden(
        monkeypatch):
    """Installed (not editable), vpd_jax's bundled data would sit in a site
    dir the sandbox must see: every other entry stays visible, it does not."""
    import shutil
    from vpd_jax.feedback import sandbox as sandbox_lib
    site = _world_readable_dir()
    try:
        os.makedirs(os.path.join(site, "vpd_jax", "data"))
        for path, text in (("vpd_jax/data/train.jsonl", "secret\n"),
                           ("vpd_probe_other.py", "VALUE = 7\n")):
            with open(os.path.join(site, path), "w") as f:
                f.write(text)
        _open_to_all(site)
        paths = sandbox_lib.site_paths() + [site]
        monkeypatch.setattr(sandbox_lib, "site_paths", lambda: paths)
        one = Problem("one", "", "", "", "atcoder", "easy", "",
                      [TestCase("1\n", "7 denied\n", "stdin")], [], None, {})
        code = ("import vpd_probe_other\n"
                "try:\n"
                f"    open({os.path.join(site, 'vpd_jax/data/train.jsonl')!r})"
                ".read()\n"
                "    seen = 'read'\n"
                "except OSError:\n"
                "    seen = 'denied'\n"
                "print(vpd_probe_other.VALUE, seen)")
        _accepted_in_both_modes(one, code)
    finally:
        shutil.rmtree(site)


def test_row4_our_package_installed_into_a_venv_stays_hidden(monkeypatch):
    """`pip install .` into a venv puts vpd_jax (and its bundled data) in
    the venv's site dir, under sys.prefix, which the sandbox must also see
    (a venv's own binaries and libraries): the prefix must not expose it
    whole, nor through the venv's lib64 -> lib link."""
    import shutil
    from vpd_jax.feedback import sandbox as sandbox_lib
    venv = _world_readable_dir()
    site = os.path.join(venv, "lib", "python3", "site-packages")
    try:
        os.makedirs(os.path.join(site, "vpd_jax", "data"))
        os.makedirs(os.path.join(site, "vpd_jax-0.1.0.dist-info"))
        os.symlink("lib", os.path.join(venv, "lib64"))
        for path, text in (("vpd_jax/data/train.jsonl", "secret\n"),
                           ("vpd_jax-0.1.0.dist-info/RECORD", "secret\n"),
                           ("vpd_probe_venv.py", "VALUE = 8\n")):
            with open(os.path.join(site, path), "w") as f:
                f.write(text)
        _open_to_all(venv)
        paths = sandbox_lib.site_paths() + [site]
        monkeypatch.setattr(sandbox_lib, "site_paths", lambda: paths)
        monkeypatch.setattr(sys, "prefix", venv)
        secrets = [os.path.join(site, "vpd_jax/data/train.jsonl"),
                   os.path.join(venv, "lib64/python3/site-packages/vpd_jax/data/train.jsonl"),
                   os.path.join(site, "vpd_jax-0.1.0.dist-info/RECORD")]
        one = Problem("one", "", "", "", "atcoder", "easy", "",
                      [TestCase("1\n", "8 0\n", "stdin")], [], None, {})
        code = ("import vpd_probe_venv\n"
                "seen = 0\n"
                f"for path in {secrets!r}:\n"
                "    try:\n"
                "        seen += 'secret' in open(path).read()\n"
                "    except OSError:\n"
                "        pass\n"
                "print(vpd_probe_venv.VALUE, seen)")
        _accepted_in_both_modes(one, code)
    finally:
        shutil.rmtree(venv)


def test_bwrap_binds_few_roots_and_masks_our_entries():
    """Each bind costs bwrap time on every test: the site dirs are bound
    whole (not entry by entry) and only our own entries are masked."""
    from vpd_jax.feedback import bwrap
    from vpd_jax.feedback import sandbox as sandbox_lib
    site = _world_readable_dir()
    try:
        for name in [f"pkg{i}" for i in range(50)] + ["vpd_jax"]:
            os.makedirs(os.path.join(site, name))
        open(os.path.join(site, "vpd_jax.pth"), "w").close()
        args = bwrap.prefix(sandbox_lib.HARNESS, [site])
        assert args.count("--ro-bind") < 15, args
        assert ["--tmpfs", os.path.join(site, "vpd_jax"), "--remount-ro",
                os.path.join(site, "vpd_jax")] == args[args.index(os.path.join(site, "vpd_jax")) - 1:][:4]
        assert ["--ro-bind", "/dev/null", os.path.join(site, "vpd_jax.pth")] == \
            args[args.index(os.path.join(site, "vpd_jax.pth")) - 2:][:3]
    finally:
        import shutil
        shutil.rmtree(site)


def test_a_fallback_that_cannot_confine_fails_loudly_at_start():
    from vpd_jax.feedback import sandbox as sandbox_lib
    box = sandbox_lib.Sandbox("fallback")
    box._confine["seccomp"] = b"\0" * 3  # a program the kernel refuses
    with pytest.raises(sandbox_lib.SandboxError, match="cannot confine"):
        box._check_confinement()
