"""A loaded submission answering function calls inside the sandbox; expected values never leave the grader."""

from __future__ import annotations

import builtins
import json
import marshal
import os
from typing import Any

from graders.base import GraderInputError
from graders.sandbox.boot import decode
from graders.sandbox.process import CandidateError, Process, RunResult, SandboxDied


def describe(text: object, line: object, source: str) -> str:
    """The submission's exception with the line it failed at, quoted from the trusted source.

    >>> describe("ZeroDivisionError: division by zero", 2, "def f():\\n    return 1 / 0")
    'ZeroDivisionError: division by zero (line 2: return 1 / 0)'
    """
    lines = source.splitlines()
    where = ""
    if type(line) is int and 0 < line <= len(lines):
        where = f" (line {line}: {lines[line - 1].strip()[:200]})"
    return f"{str(text)[:1000]}{where}"


class Session:
    """A loaded submission answering function calls; expected values stay in this (the parent) process."""

    def __init__(self, proc: Process, source: str = "") -> None:
        self.proc = proc
        self.source = source
        self.result: RunResult | None = None
        self.names: list[str] = []
        self.error: str | None = None  # the last call's exception, described with its line
        self.traceback = ""  # and its traceback, as the sandbox formatted it
        self._buf = b""
        ready = self._reply()
        names = ready.get("ready")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            if "load_error" in ready:
                self._die(None, describe(ready["load_error"], ready.get("line"), source))
            self._die("malformed ready message")
        self.names = names

    def _die(self, reason: str | None = None, error: str | None = None) -> None:
        if reason:
            self.proc.kill(reason)
        result = self.close()
        if result.status == "ok":
            result.status, result.reason = "error", "the submission exited before answering every call"
        raise SandboxDied(result, error)

    def _reply(self) -> dict[str, Any]:
        """Read one JSON line from the child before the deadline; a dead or silent child ends the session."""
        if self.result is not None:
            raise SandboxDied(self.result)
        while b"\n" not in self._buf:
            if not self.proc.wait_for(self.proc.resp_r):
                self._die("wall-clock limit exceeded")
            chunk = os.read(self.proc.resp_r, 1 << 20)
            if not chunk:
                self._die()
            self._buf += chunk
            if len(self._buf) > self.proc.limits.max_reply_bytes:
                self._die("reply size limit exceeded")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict):
            self._die("unreadable reply")
        return reply

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """Call `fn` inside the sandbox; its exception is re-raised as the same builtin type if it is one."""
        self.error, self.traceback = None, ""
        if self.result is not None:
            raise SandboxDied(self.result)
        try:
            msg = marshal.dumps((fn, args, kwargs))
        except ValueError as exc:
            raise GraderInputError(f"cannot pass the arguments of {fn}() into the sandbox: {exc}") from exc
        if not self.proc.send(msg):
            self._die()
        reply = self._reply()
        if "ok" in reply:
            try:
                return decode(reply["ok"])
            except (ValueError, TypeError, RecursionError):
                self._die("unreadable reply")
        self.error = describe(reply.get("exc", "malformed reply"), reply.get("line"), self.source)
        self.traceback = str(reply.get("tb", ""))
        name, _, text = str(reply.get("exc", "")).partition(": ")
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception):
            raise builtin(text)
        raise CandidateError(reply.get("exc", "malformed reply"))

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> RunResult:
        """End the session (idempotent) and return how the process ended."""
        if self.result is None:
            self.result = self.proc.finish()
        return self.result
