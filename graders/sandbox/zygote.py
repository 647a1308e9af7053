"""Fork server for sandbox runs (runs inside `python -I -S`, standard library only, as the grader's user).

Starting an interpreter per run costs more CPU than everything else in the sandbox, so one clean
interpreter (this module plus `boot`, nothing else) is started once and forks a fresh child per
run. The parent sends each request over a SOCK_SEQPACKET socket with the run's descriptors attached
(stdin, stdout, stderr, request pipe, reply pipe, status pipe). The server writes the child's pid to the
status pipe at once, and its wait status and CPU time when it has reaped it.

A child enters a new session, then (when asked for namespaces) new mount, network and PID namespaces;
it stays outside as the waiter while its own child becomes PID 1 inside, mounts a fresh /proc and
continues with `boot.main`, which makes the private filesystem and forks the submission.
"""

import marshal
import os
import signal
import socket
import sys

if __package__:  # imported as graders.sandbox.zygote by the grader's tools (doctest collection)
    from graders.sandbox import boot
else:  # inside the fork server, a top-level module next to boot.py
    import boot

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 16384, 1 << 18


def serve(sock_fd: int) -> None:
    """Fork one run per request until the parent closes its end of the socket."""
    sock = socket.socket(fileno=sock_fd)
    status_fds: dict[int, int] = {}

    def reap(*_: object) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = status_fds.pop(pid)
            boot._write_all(fd, marshal.dumps((status, usage.ru_utime + usage.ru_stime)))
            os.close(fd)

    signal.signal(signal.SIGCHLD, reap)
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 64, 8)
        if not msg:
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            _child(msg == b"namespaces", fds)
        status_fds[pid] = fds[-1]
        boot._write_all(fds[-1], pid.to_bytes(8, "big"))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for fd in fds[:-1]:
            os.close(fd)


def _child(namespaces: bool, fds: list[int]) -> None:
    """Become the run: own session, the run's descriptors as 0-4, then `boot.main`; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.setsid()
        high = [os.dup(fd) for fd in fds[:5]]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(5, 1 << 16)
        if namespaces:
            _enter_namespaces()
        boot.main(["main.py", "3", "4"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            sys.stderr.write(f"{exc.code}\n")
    except BaseException:  # noqa: BLE001 - the run must always end through os._exit
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _enter_namespaces() -> None:
    """New mount, network and PID namespaces; this process waits outside, its child is PID 1 inside."""
    libc = boot._libc()
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        flags |= _CLONE_NEWUSER  # an unprivileged grader becomes root of its own user namespace
    if libc.unshare(flags) != 0:
        raise OSError("unshare failed: namespaces are not available")
    if uid != 0:
        for name, text in (("uid_map", f"0 {uid} 1"), ("setgroups", "deny"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    boot._mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE, None)
    init = os.fork()
    if init:
        status = os.waitpid(init, 0)[1]
        os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    libc.prctl(boot._PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the waiter killed: the namespace goes with it
    boot._mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
