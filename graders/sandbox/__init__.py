"""Run untrusted Python in a separate, isolated, resource-limited process that can never hang the grader.

Layers, outermost first (see `graders/sandbox/boot.py` for the inside):
- each run is forked from a clean `python -I -S` fork server started once per grader process
  (`graders/sandbox/zygote.py`), which costs a fraction of starting an interpreter per run;
- a new session and process group, stdin closed (or fed test input), a minimal environment without the
  parent's secrets, stdout/stderr read concurrently and capped;
- where unshare(2) works: fresh network (no interface up, so no traffic at all), PID (a daemonised
  grandchild dies with the run) and mount namespaces, with private size-capped tmpfs over /tmp,
  /var/tmp, /dev/shm, /run/lock and the grader's home, the working directory inside that tmpfs;
- a fresh unprivileged uid per run when the grader is root, so rlimits on processes apply and every
  process of a run can be found and killed by uid;
- with `packages=True`, the documented python-grader packages shown read-only at their real paths over
  an otherwise empty, read-only site-packages (`graders/sandbox/packages.py`);
- rlimits for CPU, address space, processes, file size, open files and core dumps;
- a wall-clock deadline enforced from outside with SIGKILL to the group and to every process of the uid.

Without namespaces the sandbox still runs, with a loud warning, and an audit hook in the child blocks
sockets, new programs, ctypes and writes outside its temporary working directory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from graders.sandbox.process import (
    STATUSES,
    CandidateError,
    IsolationInfo,
    Limits,
    Process,
    RunResult,
    SandboxDied,
    kill_uid,
    pids_of,
    uid_range,
)
from graders.sandbox.session import Session

__all__ = [
    "STATUSES",
    "CandidateError",
    "IsolationInfo",
    "Limits",
    "RunResult",
    "Sandbox",
    "SandboxDied",
    "SandboxUnavailable",
    "Session",
    "isolation_info",
    "kill_uid",
    "pids_of",
    "uid_range",
]

log = logging.getLogger(__name__)

# What a run does first: unshare(2) mount, network and PID namespaces (and a user namespace when not root).
_PROBE = (
    "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
    "flags = 0x20000 | 0x20000000 | 0x40000000 | (0x10000000 if os.getuid() else 0); "
    "sys.exit(0 if libc.unshare(flags) == 0 else 'unshare: ' + os.strerror(ctypes.get_errno()))"
)


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run submissions safely on this machine (e.g. no interpreter the uid can read)."""


def _traversable(path: str) -> bool:
    """True when a process of another uid can reach `path` (every parent directory has o+x)."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i])).st_mode & 0o001:
            return False
    return True


def _interpreter(need_traversable: bool) -> str:
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
    for exe in candidates:
        if os.path.exists(exe) and (not need_traversable or _traversable(exe)):
            prefix = subprocess.run(
                [exe, "-I", "-S", "-c", "import os;print(os.__file__)"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if prefix and (not need_traversable or _traversable(prefix)):
                return exe
    raise SandboxUnavailable(
        "no Python interpreter whose standard library an unprivileged uid can read; install python3 "
        "system-wide or make the sandbox's namespaces available (see `rft doctor`)"
    )


@cache
def isolation_info(requested: str = "auto") -> IsolationInfo:
    """Detect (once) what isolation works here; warn loudly when falling back to none."""
    if requested == "auto":
        requested = os.environ.get("RFT_SANDBOX_ISOLATION", "auto")
    mode, notes = "none", []
    if requested not in ("auto", "namespaces", "none"):
        raise ValueError(f"sandbox isolation must be auto, namespaces or none, got {requested!r}")
    if requested != "none":
        probe = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _PROBE], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            mode = "namespaces"
        else:
            notes.append(f"creating namespaces failed: {(probe.stderr or probe.stdout).strip()[-200:]}")
    if mode == "none":
        if requested == "namespaces":
            raise SandboxUnavailable(f"namespace isolation requested but unavailable: {notes}")
        notes.append(
            "SANDBOX WARNING: no namespace isolation - untrusted code shares this machine's network, "
            "PIDs and /tmp; only rlimits, a separate uid and an in-process audit hook contain it"
        )
    drops = os.geteuid() == 0
    info = IsolationInfo(mode, drops, _interpreter(drops and mode == "none"), tuple(notes))
    for note in notes:
        if "WARNING" in note:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
            log.warning(note)
    return info


class Sandbox:
    """Runs submissions under `limits` with the best isolation this machine offers.

    `packages=True` lets them import the third-party packages OpenAI's python-grader image has
    (`graders.sandbox.packages`), read-only; off by default, so submissions see the standard library only.
    """

    def __init__(self, limits: Limits | None = None, isolation: str = "auto", packages: bool = False) -> None:
        self.limits = limits or Limits()
        self.info = isolation_info(isolation)
        self.packages = packages

    def _check(self, source: str) -> None:
        if not isinstance(source, str):
            raise TypeError(f"sandbox source must be a string, got {type(source).__name__}")

    def run(self, source: str, stdin: str | bytes = b"", files: dict[str, str] | None = None) -> RunResult:
        """Run `source` as a program with `stdin` as its input."""
        self._check(source)
        if len(source.encode()) > self.limits.max_source_bytes:
            return RunResult("error", None, "", "", 0.0, 0.0, "source size limit exceeded", self.info.mode)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        return Process(
            self.info, self.limits, "run", {**(files or {}), "main.py": source}, data, self.packages
        ).finish()

    def session(self, source: str) -> Session:
        """Load `source` as a module serving calls to its functions; `SandboxDied` if loading fails."""
        self._check(source)
        if len(source.encode()) > self.limits.max_source_bytes:
            raise SandboxDied(
                RunResult("error", None, "", "", 0.0, 0.0, "source size limit exceeded", self.info.mode)
            )
        return Session(
            Process(self.info, self.limits, "serve", {"main.py": source}, b"", self.packages), source
        )

    def run_many(
        self, jobs: Iterable[tuple[str, str | bytes]], workers: int | None = None
    ) -> list[RunResult]:
        """Run (source, stdin) jobs concurrently, one per core by default, in order."""
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            return list(pool.map(lambda job: self.run(*job), jobs))
