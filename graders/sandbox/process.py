"""One sandboxed child process and the call session built on it (see `graders.sandbox` for the design).

`Process` has a run forked by the fork server (`graders/sandbox/zygote.py`, one clean `python -I -S` per
grader process and interpreter), pumps its pipes in the caller's thread, enforces the wall-clock deadline,
collects its exit status and CPU time and removes every trace. `Session` is a loaded submission answering
calls (`graders/sandbox/session.py`).
"""

from __future__ import annotations

import itertools
import marshal
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from graders.sandbox import boot
from graders.sandbox.boot import EXIT_MEMORY, send_frame
from graders.sandbox.packages import package_cfg

# Imported rather than run as a script, so the server loads cached bytecode instead of compiling it.
# `graders/sandbox/` goes on the path (last, so nothing there can shadow the stdlib) and `zygote.py` and
# `boot.py` load as top-level modules: the server imports no package, not even `graders`.
ZYGOTE = (
    f"import sys; sys.path.append({os.path.dirname(os.path.abspath(boot.__file__))!r}); "
    "import zygote; sys.path.pop(); zygote.serve(int(sys.argv[1]))"
)
STATUSES = ("ok", "timeout", "memory", "killed", "error")
_HIDDEN = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/nonexistent",
    # one thread per BLAS / OpenMP pool: a run's processes and threads share its RLIMIT_NPROC
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_UID_BASE = 1_700_000_000
_uids = itertools.count()


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed execution (a run, or a whole session of calls)."""

    wall_s: float = 10.0
    cpu_s: int | None = None  # CPU seconds; None = the wall-clock limit rounded up
    memory_mb: int = 1024  # address space
    max_processes: int = 32
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 1 << 20  # per stream; exceeding it kills the run
    max_reply_bytes: int = 16 << 20  # one encoded return value in a session
    max_source_bytes: int = 256_000
    tmpfs_mb: int = 64

    def child(self) -> dict[str, int]:
        cpu = self.cpu_s if self.cpu_s is not None else max(1, int(-(-self.wall_s // 1)))
        keys = ("memory_mb", "max_processes", "max_file_mb", "max_open_files")
        return {"cpu_s": cpu, **{k: getattr(self, k) for k in keys}}


@dataclass
class RunResult:
    """What came out of one sandboxed execution; `status` is one of `STATUSES`."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    reason: str | None = None
    isolation: str = "none"
    uid: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IsolationInfo:
    """What containment this machine gives; reported by `rft doctor`."""

    mode: str  # "namespaces" or "none"
    drops_uid: bool
    interpreter: str
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SandboxDied(BaseException):
    """The session's process ended (timeout, memory, crash). A BaseException so test code that catches
    `Exception` around a candidate call cannot swallow it."""

    def __init__(self, result: RunResult, error: str | None = None) -> None:
        super().__init__(error or f"sandbox {result.status}: {result.reason or result.stderr[-300:]}")
        self.result = result
        self.error = error  # the submission's own exception when that ended it, with the failing line


class CandidateError(Exception):
    """The candidate raised an exception that is not a builtin one; the message names its type."""


def _keep_paths(hidden: Sequence[str], interpreter: str) -> list[str]:
    """Interpreter directories that lie under a hidden directory and must be bound back read-only."""
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(interpreter))}
    return sorted(p for p in prefixes if any(p.startswith(h + os.sep) for h in hidden))


def uid_range(pid: int | None = None) -> range:
    """The uids that sandbox runs started by process `pid` (default: this one) execute as."""
    start = _UID_BASE + ((os.getpid() if pid is None else pid) % 100_000) * 1000
    return range(start, start + 1000)


def pids_of(uids: range) -> list[int]:
    """Live processes whose real uid lies in `uids` (read from /proc, so renamed ones count too)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status", "rb") as f:
                    status = f.read()
            except OSError:
                continue
            line = status[status.find(b"\nUid:") :].split(b"\n", 2)[1]
            if int(line.split()[1]) in uids and b"\nState:\tZ" not in status:  # zombies are dead already
                pids.append(int(name))
    return pids


def kill_uid(uid: int, within_s: float = 3.0) -> int:
    """SIGKILL every process whose real uid is `uid` until none is left; returns how many were killed."""
    killed, deadline = 0, time.monotonic() + within_s
    while (pids := pids_of(range(uid, uid + 1))) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    return killed


def _poll(readers: list[int], writer: int | None, timeout_s: float) -> set[int]:
    """The fds ready to read (or hung up), plus `writer` when writable; poll, since fds may exceed 1024."""
    poller = select.poll()
    for fd in readers:
        poller.register(fd, select.POLLIN)
    if writer is not None:
        poller.register(writer, select.POLLOUT)
    return {fd for fd, _ in poller.poll(max(0.0, timeout_s) * 1000)}


def _read_status(fd: int) -> tuple[int, float]:
    """The run's wait status and CPU seconds from its status pipe (written by the fork server on reaping)."""
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    if not data:
        return 0x7F00, 0.0  # the fork server died: report exit status 127
    status, cpu = marshal.loads(data)
    return int(status), float(cpu)


class _Zygote:
    """Client of one fork server per (grader process, interpreter); restarted if it dies."""

    _lock = threading.Lock()
    _servers: dict[tuple[int, str], _Zygote] = {}  # noqa: RUF012 - one shared registry

    def __init__(self, interpreter: str) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.popen = subprocess.Popen(
            [interpreter, "-I", "-S", "-c", ZYGOTE, str(theirs.fileno())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            env=dict(_ENV),
            start_new_session=True,
            cwd="/",
        )
        theirs.close()

    @classmethod
    def get(cls, info: IsolationInfo) -> _Zygote:
        with cls._lock:
            key = (os.getpid(), info.interpreter)
            server = cls._servers.get(key)
            if server is None or server.popen.poll() is not None:
                server = cls._servers[key] = cls(info.interpreter)
            return server

    def spawn(self, mode: str, fds: list[int]) -> tuple[int, int]:
        """Fork a run with `fds` as its stdin, stdout, stderr, request and reply pipes; (pid, status fd)."""
        status_r, status_w = os.pipe()
        try:
            socket.send_fds(self.sock, [mode.encode()], [*fds, status_w])
        finally:
            os.close(status_w)
        head = os.read(status_r, 8) if _poll([status_r], None, 30.0) else b""
        if len(head) < 8:
            os.close(status_r)
            raise RuntimeError("the sandbox fork server did not start the run")
        return int.from_bytes(head, "big"), status_r


class Process:
    """One sandboxed child: spawned, pumped, killed on deadline, reaped with its rusage, cleaned up."""

    def __init__(
        self,
        info: IsolationInfo,
        limits: Limits,
        mode: str,
        files: dict[str, str],
        stdin: bytes,
        packages: bool = False,
    ):
        self.info, self.limits = info, limits
        self.uid = uid_range()[next(_uids) % 1000] if info.drops_uid else None
        self.workdir = None if info.mode == "namespaces" else tempfile.mkdtemp(prefix="rft-sbx-")
        self.kill_reason: str | None = None
        self.out = {1: bytearray(), 2: bytearray()}
        stdin_r, self.writer = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        self.start = time.monotonic()
        self.deadline = self.start + limits.wall_s
        child_ends = [stdin_r, out_w, err_w, req_r, resp_w]
        try:
            self.pid, self.status_r = _Zygote.get(info).spawn(info.mode, child_ends)
        except BaseException:
            for fd in (out_r, err_r, self.req_w, self.resp_r, *([self.writer] if self.writer else [])):
                os.close(fd)
            raise
        finally:
            for fd in child_ends:
                os.close(fd)
        home = os.path.realpath(os.path.expanduser("~"))
        hidden = [p for p in (*_HIDDEN, home) if os.path.isdir(p) and p != "/"]
        cfg = {
            "isolation": info.mode,
            "uid": self.uid,
            "mode": mode,
            "files": files,
            "workdir": self.workdir,
            "limits": limits.child(),
            "hide": hidden,
            "home": home,
            "keep": _keep_paths(hidden, info.interpreter),
            "tmpfs_mb": limits.tmpfs_mb,
            **package_cfg(info.mode, info.interpreter, packages),
        }
        self.send(marshal.dumps(cfg))
        self.streams = {out_r: 1, err_r: 2}  # still open for reading; both are closed in finish()
        self.out_fds = (out_r, err_r)
        self.pending = memoryview(stdin)

    def send(self, payload: bytes) -> bool:
        try:
            send_frame(self.req_w, payload)
            return True
        except OSError:
            return False

    def wait_for(self, fd: int) -> bool:
        """Pump stdin/stdout/stderr until `fd` is readable (True) or the deadline passes (False).

        All I/O happens in the caller's thread: output is drained whenever the grader waits on the child,
        and a child that fills its pipe while the grader is busy merely blocks until the next wait.
        """
        while True:
            remaining = self.remaining()
            ready = _poll([fd, *self.streams], self.writer, remaining)
            for stream in (r for r in ready if r in self.streams):
                self._read(stream)
            if self.writer in ready:
                self._write()
            if fd in ready:
                return True
            if remaining <= 0:
                return False

    def _read(self, fd: int) -> None:
        chunk = os.read(fd, 65536)
        buf = self.out[self.streams[fd]]
        if not chunk:
            del self.streams[fd]
        elif len(buf) + len(chunk) > self.limits.max_output_bytes:
            buf += chunk[: self.limits.max_output_bytes - len(buf)]
            del self.streams[fd]
            self.kill("output limit exceeded")
        else:
            buf += chunk

    def _write(self) -> None:
        try:
            self.pending = self.pending[os.write(self.writer, self.pending[:65536]) :]
        except OSError:
            self.pending = self.pending[:0]
        if not self.pending:
            os.close(self.writer)
            self.writer = None

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.uid is not None:
            kill_uid(self.uid)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def finish(self) -> RunResult:
        """Wait until the deadline, kill if needed, reap, remove every trace, map the outcome to a status."""
        os.close(self.req_w)
        if not self.wait_for(self.status_r):
            self.kill("wall-clock limit exceeded")
        wait_status, cpu = _read_status(self.status_r)
        rc = os.waitstatus_to_exitcode(wait_status)
        if self.info.mode == "namespaces" and 128 < rc < 128 + signal.NSIG and not self.kill_reason:
            rc = 128 - rc  # the namespace's init reports a signal death of the submission as 128 + signal
        wall = time.monotonic() - self.start
        if self.uid is not None and (self.info.mode == "none" or self.kill_reason or rc < 0):
            kill_uid(self.uid)
        end = time.monotonic() + 1.0  # read what is still in the pipes; a leftover writer cannot stall us
        while self.streams and (left := end - time.monotonic()) > 0:
            for fd in _poll(list(self.streams), None, left):
                self._read(fd)
        for fd in (self.status_r, self.resp_r, *self.out_fds, *([self.writer] if self.writer else [])):
            os.close(fd)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        status, reason = self._status(rc, cpu)
        return RunResult(
            status,
            rc,
            self.out[1].decode(errors="replace"),
            self.out[2].decode(errors="replace"),
            wall,
            cpu,
            reason,
            self.info.mode,
            self.uid,
        )

    def _status(self, rc: int, cpu: float) -> tuple[str, str | None]:
        if self.kill_reason and self.kill_reason.startswith("wall"):
            return "timeout", self.kill_reason
        if self.kill_reason:
            return "killed", self.kill_reason
        if rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and cpu >= self.limits.child()["cpu_s"]):
            return "timeout", "CPU time limit exceeded"
        if rc == EXIT_MEMORY:
            return "memory", "memory limit exceeded"
        if rc < 0:
            return "killed", f"killed by {signal.Signals(-rc).name}"
        return ("error", f"exit status {rc}") if rc else ("ok", None)
