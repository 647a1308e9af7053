"""The sandbox contains hostile programs: each attack ends promptly with the right status, leaves no
process of its run alive and no file outside its (removed) working directory."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import threading
import time

import pytest

from graders.base import GraderInputError
from graders.code import CodeGrader
from graders.sandbox import Limits, Sandbox, SandboxDied, isolation_info, pids_of, uid_range
from graders.sandbox.boot import decode, dump
from graders.sandbox.process import _Zygote

FAST = Limits(wall_s=2.0, memory_mb=256)
MARK = "rft-escape-probe"
WATCHED = ["/tmp", "/var/tmp", "/dev/shm", os.path.expanduser("~")]


def _snapshot() -> set[str]:
    """Files in the watched places that a sandbox run could have made (by name marker or sandbox owner)."""
    found = set()
    for place in WATCHED:
        for name in os.listdir(place) if os.path.isdir(place) else []:
            path = os.path.join(place, name)
            try:
                owner = os.lstat(path).st_uid
            except FileNotFoundError:
                continue
            if MARK in name or owner >= uid_range(1).start:
                found.add(path)
    return found


def _run_contained(sandbox: Sandbox, source: str, **kwargs: object):
    """Run `source`, then assert that nothing of the run is left behind."""
    before = _snapshot()
    start = time.monotonic()
    result = sandbox.run(textwrap.dedent(source), **kwargs)
    elapsed = time.monotonic() - start
    assert elapsed < sandbox.limits.wall_s + 5, f"took {elapsed:.1f}s"
    assert pids_of(uid_range()) == [], "a process of the run survived"
    assert _snapshot() - before == set(), "a file was left outside the working directory"
    return result


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(FAST)


ATTACKS = {
    "infinite loop": ("while True: pass", {"timeout"}),
    "loop ignoring signals": (
        """
        import signal
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGALRM):
            signal.signal(s, signal.SIG_IGN)
        while True: pass
        """,
        {"timeout"},
    ),
    "sleep past the limit": ("import time; time.sleep(60)", {"timeout"}),
    "fork bomb": (
        """
        import os
        while True:
            try: os.fork()
            except OSError: pass
        """,
        {"timeout"},
    ),
    "memory bomb": ("x = []\nwhile True: x.append(bytearray(10**8))", {"memory"}),
    "gigabyte of output": ("import sys\nwhile True: sys.stdout.write('x' * 65536)", {"killed"}),
    "fill the disk": (
        """
        block = b'x' * (1 << 20)
        for i in range(10**6):
            with open(f'fill{i}', 'wb') as f:
                while True: f.write(block)
        """,
        {"killed", "error"},
    ),
    "segfault": ("import faulthandler; faulthandler._sigsegv()", {"killed"}),
    "kill its parent": (
        # the parent and PID 1 are out of reach; pid 0 is the run's own process group, so it kills itself
        "import os, signal\nfor pid in (os.getppid(), 1, 0):\n    try: os.kill(pid, signal.SIGKILL)\n    except OSError: pass",
        {"killed"},
    ),
    "double-forked daemon": (
        f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(5)
                open('/tmp/{MARK}-daemon', 'w').write('outlived the run')
            os._exit(0)
        print('parent done')
        """,
        {"ok"},
    ),
}


def _expected(name: str) -> set[str]:
    """Without namespaces the child's audit hook refuses os.fork, so the daemon attack ends in an error."""
    statuses = ATTACKS[name][1]
    return (
        statuses | {"error"}
        if name == "double-forked daemon" and isolation_info().mode == "none"
        else statuses
    )


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_contained(sandbox: Sandbox, name: str) -> None:
    source, statuses = ATTACKS[name][0], _expected(name)
    result = _run_contained(sandbox, source)
    assert result.status in statuses, (result.status, result.reason, result.stderr[-500:])
    assert len(result.stdout) <= sandbox.limits.max_output_bytes


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_through_the_code_grader_scores_zero(name: str) -> None:
    """The same attacks as a submission loaded for function-call tests: score 0, the run's status."""
    source, statuses = ATTACKS[name][0], _expected(name)
    grader = CodeGrader(limits=FAST)
    item = {
        "entry_point": "add",
        "tests": [{"args": [1, 2], "expected": 3}, {"args": [5, 7], "expected": 12}],
    }
    before, start = _snapshot(), time.monotonic()
    grade = grader.grade(f"```python\n{textwrap.dedent(source)}\n```", item)
    assert time.monotonic() - start < FAST.wall_s + 5
    assert grade.score == 0.0 and grade.details["status"] in statuses, grade.to_dict()
    assert (grade.error is None) == (grade.details["status"] == "ok")
    assert pids_of(uid_range()) == [] and _snapshot() - before == set()


def test_daemon_dies_with_the_run(sandbox: Sandbox) -> None:
    """The grandchild sleeps 5 s then writes a marker; 6 s later neither it nor the marker exists."""
    _run_contained(sandbox, ATTACKS["double-forked daemon"][0])
    time.sleep(0 if isolation_info().mode == "namespaces" else 6)
    assert not os.path.exists(f"/tmp/{MARK}-daemon")


def test_writes_outside_the_working_directory_never_reach_the_host(sandbox: Sandbox) -> None:
    source = f"""
        import os
        made = []
        for place in {WATCHED!r} + ['/', os.path.expanduser('~')]:
            try:
                open(os.path.join(place, '{MARK}'), 'w').write('x')
                made.append(place)
            except OSError:
                pass
        open('inside.txt', 'w').write('fine')
        print(sorted(made), os.path.exists('inside.txt'))
    """
    result = _run_contained(sandbox, source)
    assert result.status == "ok" and result.stdout.strip().endswith("True"), result.stderr


def test_parent_environment_secrets_are_not_visible(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RFT_TEST_SECRET", "hunter2-secret")
    source = """
        import os
        print(os.environ.get('RFT_TEST_SECRET'))
        for pid in os.listdir('/proc'):
            try: print(open(f'/proc/{pid}/environ', 'rb').read())
            except OSError: pass
    """
    result = _run_contained(sandbox, source)
    assert result.status == "ok"
    assert "hunter2" not in result.stdout and "hunter2" not in result.stderr


def test_no_network_loopback_or_outside(sandbox: Sandbox) -> None:
    """A real listener on the host's 127.0.0.1 never sees a connection; TEST-NET-1 is unreachable."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted: list[object] = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True)
    thread.start()
    source = f"""
        import socket
        for addr in [('127.0.0.1', {port}), ('192.0.2.1', 80)]:
            try:
                socket.create_connection(addr, timeout=1).sendall(b'leak')
                print('connected', addr)
            except OSError as exc:
                print('blocked', addr, type(exc).__name__)
    """
    result = _run_contained(sandbox, source)
    thread.join()
    server.close()
    assert "connected" not in result.stdout and result.stdout.count("blocked") == 2, result.stdout
    assert accepted == [None]


def _accept(server: socket.socket) -> object:
    try:
        return server.accept()
    except OSError:
        return None


LEGAL = {
    "correct program": ("print(sum(int(x) for x in input().split()))", "2 3 4", "9"),
    "500 kB through stdin and stdout": (
        "import sys; sys.stdout.write(sys.stdin.read())",
        "ab" * 250_000,
        "ab" * 250_000,
    ),
    "one CPU second and 200 MB": (
        """
        import time
        block = bytearray(200 * 10**6)
        end = time.process_time() + 1.0
        while time.process_time() < end: pass
        print(len(block) // 10**6)
        """,
        "",
        "200",
    ),
}


@pytest.mark.parametrize("name", list(LEGAL))
def test_legal_programs_still_pass(name: str) -> None:
    source, stdin, expected = LEGAL[name]
    result = _run_contained(Sandbox(Limits(wall_s=20.0)), source, stdin=stdin)
    assert (result.status, result.stdout.strip()) == ("ok", expected), result.stderr
    assert result.cpu_s > (0.9 if "CPU" in name else 0.0)


def test_session_calls_return_exact_types_and_exceptions(sandbox: Sandbox) -> None:
    session = sandbox.session(
        "def f(x):\n    return [x, (x,), {x: {x}}, b'b', 1.5]\ndef g():\n    raise KeyError('k')\n"
    )
    assert session.call("f", 2) == [2, (2,), {2: {2}}, b"b", 1.5]
    with pytest.raises(KeyError):
        session.call("g")
    with pytest.raises(GraderInputError):
        session.call("f", object())
    assert session.close().status == "ok"


def test_session_timeout_raises_sandbox_died(sandbox: Sandbox) -> None:
    session = sandbox.session("def spin():\n    while True: pass\n")
    with pytest.raises(SandboxDied) as died:
        session.call("spin")
    assert died.value.result.status == "timeout"
    assert pids_of(uid_range()) == []


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        -(2**70),
        2.5,
        1e-7,
        float("-inf"),
        's"\\\n\x00\ud800é',
        [1, [2]],
        (1, "a"),
        {1: (2,)},
        {3},
        frozenset({4}),
        b"\x00",
        1j,
    ],
)
def test_codec_round_trip_keeps_types(value: object) -> None:
    back = decode(json.loads(dump(value)))
    assert type(back) is type(value) and back == value


def test_codec_rejects_subclasses_that_could_lie() -> None:
    class Liar(int):
        def __eq__(self, other: object) -> bool:
            return True

    with pytest.raises(TypeError):
        dump([Liar(1)])


def test_no_descriptor_leaks_and_fork_server_restarts(sandbox: Sandbox) -> None:
    """Runs leave no open fds behind; a killed fork server is replaced on the next run."""
    sandbox.run("pass")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        assert sandbox.run("print(1)").stdout == "1\n"
        with sandbox.session("def f():\n    return 2\n") as session:
            assert session.call("f") == 2
    assert len(os.listdir("/proc/self/fd")) == before
    server = _Zygote.get(sandbox.info)
    server.popen.kill()
    server.popen.wait()
    assert sandbox.run("print(3)").stdout == "3\n"
    assert _Zygote.get(sandbox.info) is not server


def test_extra_files_are_in_the_working_directory(sandbox: Sandbox) -> None:
    result = sandbox.run("print(open('data.txt').read().upper())", files={"data.txt": "abc"})
    assert (result.status, result.stdout) == ("ok", "ABC\n")


def test_source_size_limit(sandbox: Sandbox) -> None:
    result = sandbox.run("x = 1\n" * 100_000)
    assert (result.status, result.reason) == ("error", "source size limit exceeded")


FALLBACK_CASES = {
    "correct program": ("print(6 * 7)", "ok", "42"),
    "socket blocked": ("import socket\nsocket.socket()", "error", ""),
    "write outside blocked": (f"open('/tmp/{MARK}', 'w')", "error", ""),
    "fork blocked": ("import os\nos.fork()", "error", ""),
    "infinite loop": ("while True: pass", "timeout", ""),
}


@pytest.mark.parametrize("name", list(FALLBACK_CASES))
def test_fallback_without_namespaces_still_contains(name: str) -> None:
    with pytest.warns(RuntimeWarning, match="SANDBOX WARNING"):
        isolation_info.cache_clear()
        sandbox = Sandbox(FAST, isolation="none")
    source, status, stdout = FALLBACK_CASES[name]
    result = _run_contained(sandbox, source)
    assert (result.status, result.stdout.strip(), result.isolation) == (status, stdout, "none"), result.stderr
