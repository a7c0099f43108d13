"""Hostile programs, in both sandbox modes: each gets a verdict in bounded
time, leaves no process and no file behind, and reaches no network."""

import os
import socket
import time

import pytest

from vpd_jax.feedback import VERDICTS, Limits, Problem, TestCase, grade
from vpd_jax.feedback import fallback
from vpd_jax.feedback import sandbox as sandbox_lib

LIMITS = Limits(time_s=1.0, wall_s=2.5, memory_mb=512, output_bytes=1 << 20)
MARKER = f"vpd-hostile-{os.getpid()}"
PROBLEM = Problem("hostile", "", "", "", "atcoder", "easy", "",
                  [TestCase("1\n", "1\n", "stdin")], [], None, {})


@pytest.fixture(scope="module", params=("bwrap", "fallback"))
def sandbox(request):
    if request.param == "bwrap" and not sandbox_lib.bwrap_available():
        pytest.skip("bubblewrap does not run on this machine")
    return sandbox_lib.Sandbox(request.param)


OWNED = f"VPD_GRADER_PID={os.getpid()}".encode()
MY_UIDS = range(fallback.slot_uid(0), fallback.slot_uid(0) + 64)


def _sandbox_processes():
    """Processes that should be gone: sandboxed processes of this grader
    (by environment, slot uid or marker) and its unreaped children."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8",
                                                               "replace")
            with open(f"/proc/{pid}/environ", "rb") as f:
                owned = OWNED in f.read().split(b"\0")
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            uid = int(status["Uid"].split()[0])
            ppid = int(status["PPid"])
            state = status["State"].split()[0]
        except (OSError, KeyError, ValueError):
            continue
        if (owned or MARKER in cmdline or uid in MY_UIDS
                or (ppid == os.getpid() and state == "Z")):
            found.append((int(pid), cmdline, state))
    return found


def _stray_files():
    roots = ["/tmp", "/var/tmp", "/dev/shm", os.getcwd(),
             os.path.expanduser("~")]
    stray = []
    for root in roots:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        stray += [os.path.join(root, n) for n in names
                  if MARKER in n or n.startswith("vpd-sandbox-")]
    return stray


def run_hostile(sandbox, code, *, limits=LIMITS, max_seconds=10.0):
    before_files = set(_stray_files())
    started = time.monotonic()
    result = grade(PROBLEM, f"```python\n{code}\n```", limits=limits,
                   sandbox=sandbox)
    elapsed = time.monotonic() - started
    assert elapsed < max_seconds, f"took {elapsed:.1f} s"
    assert result["verdict"] in VERDICTS
    assert result["reward"] == (1.0 if result["passed"] else 0.0)
    deadline = time.monotonic() + 2.0
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)  # a killed process may take a moment to vanish
    assert _sandbox_processes() == []
    assert set(_stray_files()) - before_files == set()
    return result


def test_infinite_loop(sandbox):
    assert run_hostile(sandbox, "while True:\n    pass")["verdict"] == (
        "time_limit_exceeded")


def test_loop_catching_base_exception(sandbox):
    code = ("import signal\n"
            "for s in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT):\n"
            "    signal.signal(s, signal.SIG_IGN)\n"
            "while True:\n"
            "    try:\n"
            "        while True:\n"
            "            pass\n"
            "    except BaseException:\n"
            "        pass")
    # Wall limit well past RLIMIT_CPU's hard limit (SIGKILL at time_s + 1):
    # the kernel, not the wall clock, ends it.
    limits = Limits(time_s=1.0, wall_s=8.0)
    result = run_hostile(sandbox, code, limits=limits, max_seconds=12)
    assert result["verdict"] == "time_limit_exceeded"
    assert "wall time" not in result["critique"]


def test_long_sleep_hits_wall_limit(sandbox):
    result = run_hostile(sandbox, "import time\ntime.sleep(600)")
    assert result["verdict"] == "time_limit_exceeded"
    assert "wall time" in result["critique"]


def test_memory_hog(sandbox):
    # Touches every page it gets; CPU time to spare, so a loaded host's slow
    # page faults cannot turn it into a time-limit verdict.
    code = "x = []\nwhile True:\n    x.append(' ' * (16 << 20))"
    limits = Limits(time_s=4.0, wall_s=8.0, memory_mb=256)
    assert run_hostile(sandbox, code, limits=limits, max_seconds=15)[
        "verdict"] == "memory_limit_exceeded"


def test_fork_bomb(sandbox):
    code = ("import os\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except Exception:\n"
            "        pass")
    assert run_hostile(sandbox, code)["verdict"] == "time_limit_exceeded"


def test_gigabytes_of_output(sandbox):
    code = ("import sys\nchunk = b'y' * (1 << 20)\n"
            "for _ in range(2048):\n"
            "    sys.stdout.buffer.write(chunk)\n"
            "    sys.stderr.buffer.write(chunk)")
    assert run_hostile(sandbox, code)["verdict"] == "output_limit_exceeded"


def test_background_process_in_new_session(sandbox):
    code = (f"import os, subprocess, time\n"
            f"try:\n"
            f"    subprocess.Popen(['sleep', '600', '{MARKER}'],\n"
            f"                     start_new_session=True)\n"
            f"except Exception as e:\n"
            f"    print('popen refused:', e)\n"
            f"try:\n"
            f"    if os.fork() == 0:\n"
            f"        os.setsid()\n"
            f"        time.sleep(600)\n"
            f"except Exception as e:\n"
            f"    print('fork refused:', e)\n"
            f"import threading\n"
            f"threading.Thread(target=time.sleep, args=(600,)).start()\n"
            f"print(1)")
    result = run_hostile(sandbox, code)
    assert result["verdict"] == "wrong_answer"  # printed the refusals too


def test_killing_its_parent(sandbox):
    code = ("import os, signal\n"
            "for pid in (os.getppid(), -os.getpgid(os.getppid()),\n"
            "            -os.getpgid(0)):\n"
            "    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n"
            "    except Exception as e:\n"
            "        pass\n"
            "print(1)")
    run_hostile(sandbox, code)
    # The grader (this process) survived; the sandbox still grades.
    ok = grade(PROBLEM, "```python\nprint(input())\n```", limits=LIMITS,
               sandbox=sandbox)
    assert ok["verdict"] == "accepted"


def test_writing_files_outside_its_temp_dir(sandbox):
    targets = [os.path.join(d, MARKER) for d in
               ("/tmp", "/var/tmp", "/dev/shm", os.getcwd(),
                os.path.expanduser("~"), "/etc")]
    code = (f"import os\n"
            f"for path in {targets!r}:\n"
            f"    try:\n"
            f"        with open(path, 'w') as f:\n"
            f"            f.write('x')\n"
            f"    except Exception:\n"
            f"        pass\n"
            f"open('inside-{MARKER}', 'w').write('fine')\n"
            f"print(1)")
    assert run_hostile(sandbox, code)["verdict"] == "accepted"
    for path in targets:
        assert not os.path.exists(path), path


def test_no_network(sandbox):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    tcp.settimeout(0.3)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.3)
    port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
    code = (f"import socket\n"
            f"try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), 1).send(b'hi')\n"
            f"    print('connected')\n"
            f"except Exception as e:\n"
            f"    print('blocked', type(e).__name__)\n"
            f"try:\n"
            f"    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"    s.sendto(b'hi', ('127.0.0.1', {udp_port}))\n"
            f"except Exception as e:\n"
            f"    pass\n"
            f"print(1)")
    try:
        result = run_hostile(sandbox, code)
        assert result["verdict"] == "wrong_answer"
        assert "blocked" in result["critique"]  # it tried, and was refused
        with pytest.raises(socket.timeout):
            tcp.accept()
        with pytest.raises(socket.timeout):
            udp.recvfrom(16)
    finally:
        tcp.close()
        udp.close()


def test_cannot_read_the_graders_files(sandbox):
    secret = os.path.abspath(__file__)
    code = (f"try:\n"
            f"    print(len(open({secret!r}).read()) > 0)\n"
            f"except Exception as e:\n"
            f"    print('denied')")
    result = run_hostile(sandbox, code)
    if sandbox.mode == "bwrap" or fallback.landlock_abi():
        # bwrap shows only the system; the fallback's Landlock only the
        # system and interpreter trees
        assert result["verdict"] == "wrong_answer"
        assert "denied" in result["critique"]
