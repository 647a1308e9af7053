"""In-sandbox bootstrap: isolate, drop privileges, apply rlimits, then run or serve the submission.

Runs as `main(["main.py", REQ_FD, RESP_FD])` in a child forked by the fork server (`zygote.py`, inside
`python -I -S`, standard library only, no package imports): the first code inside the sandbox, still as
the grader's user. The parent sends trusted `marshal` frames on REQ_FD (the configuration, then call
requests); the child answers with JSON lines on RESP_FD that the parent parses with `json` and
`decode`, never with `marshal`, since that text is untrusted. The parent imports this same module, so
both sides share one codec.

Why results cannot be forged: expected values never enter the sandbox. In "serve" mode this process
only answers `call(fn, args)` requests with the *actual* return value, encoded with exact builtin
types (an object overriding `__eq__` is not encodable), and the parent does every comparison. A
submission that exits early, patches this loop or writes fake replies can at most claim return
values it could have returned honestly.
"""

import marshal
import os
import resource
import stat
import sys

# Annotations use `object` rather than typing.Any: importing typing (and with it re and enum) would
# cost more than the rest of the sandbox's start-up.
EXIT_MEMORY = 86  # exit status of a run that died of MemoryError (mapped to status "memory")

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 2, 4, 32, 4096, 16384
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_CAP_VERSION_3 = 0x20080522
_PATH_EVENTS = ("os.mkdir", "os.rename", "os.symlink", "os.link", "os.remove", "os.rmdir", "os.chmod")
_BLOCKED_EVENTS = ("socket.", "ctypes.", "os.exec", "os.posix_spawn", "os.system", "subprocess.", "os.fork")


def dump(value: object) -> str:
    """JSON text for `value` keeping exact builtin types; any other type raises TypeError.

    Hand-written rather than `json.dumps` because importing `json` (and with it `re` and `enum`) would
    roughly double the sandbox's start-up time. Dicts are always tagged, so no plain JSON object remains.

    >>> dump((1, 2.5, {"a": {3}}, None))
    '{"~t":[1,2.5,{"~d":[["a",{"~s":[3]}]]},null]}'
    """
    kind = type(value)
    if value is None or kind is bool:
        return "null" if value is None else ("true" if value else "false")
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if value - value == 0 else f'{{"~f":"{value!r}"}}'
    if kind is str:
        return '"' + value.translate(_escapes()) + '"'
    if kind is list:
        return "[" + ",".join(map(dump, value)) + "]"
    if kind in (tuple, set, frozenset):
        tag = {tuple: "~t", set: "~s", frozenset: "~fs"}[kind]
        return f'{{"{tag}":[{",".join(map(dump, value))}]}}'
    if kind is dict:
        return '{"~d":[' + ",".join(f"[{dump(k)},{dump(v)}]" for k, v in value.items()) + "]}"
    if kind is bytes:
        return f'{{"~b":"{value.hex()}"}}'
    if kind is complex:
        return f'{{"~c":[{dump(value.real)},{dump(value.imag)}]}}'
    raise TypeError(f"a value of type {kind.__name__} cannot cross the sandbox boundary")


_ESCAPES: dict[int, str] = {}


def _escapes() -> dict[int, str]:
    """str.translate table: JSON escapes for quotes, backslashes, control characters and lone surrogates."""
    if not _ESCAPES:
        _ESCAPES.update({c: f"\\u{c:04x}" for c in (*range(32), *range(0xD800, 0xE000))})
        _ESCAPES.update({34: '\\"', 92: "\\\\"})
    return _ESCAPES


def send_frame(fd: int, payload: bytes) -> None:
    """Length-prefixed frame (parent to child: trusted `marshal` data, config and call requests)."""
    _write_all(fd, len(payload).to_bytes(8, "big") + payload)


def read_frame(stream: object) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    return stream.read(int.from_bytes(head, "big"))


def decode(data: object) -> object:
    """Inverse of `dump`, applied to its parsed JSON.

    >>> import json
    >>> decode(json.loads(dump([(1, "x"), {2: None}, {b"\\x00"}, float("nan")])))
    [(1, 'x'), {2: None}, {b'\\x00'}, nan]
    """
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    ((tag, body),) = data.items()
    if tag == "~t":
        return tuple(decode(v) for v in body)
    if tag == "~d":
        return {decode(k): decode(v) for k, v in body}
    if tag in ("~s", "~fs"):
        return (set if tag == "~s" else frozenset)(decode(v) for v in body)
    if tag == "~b":
        return bytes.fromhex(body)
    if tag == "~c":
        return complex(decode(body[0]), decode(body[1]))
    if tag == "~f":
        return float(body)
    raise ValueError(f"unknown tag {tag!r} in sandbox reply")


def _libc() -> object:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(
    libc: object, src: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    if libc.mount(_bytes(src), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _bind_read_only(libc: object, fd: int, path: str) -> None:
    """Bind what `fd` (opened before any mount) refers to onto `path`, read-only and without setuid."""
    _mount(libc, f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC, None)
    _mount(libc, None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID, None)
    os.close(fd)


def _isolate_filesystem(libc: object, cfg: dict) -> str:
    """Private tmpfs over every world-writable place and the grader's home; keep the interpreter reachable."""
    keep = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in cfg["keep"]}
    shown = [
        (os.path.join(site, entry), os.open(os.path.join(site, entry), os.O_PATH))
        for site, entries in cfg["packages"].items()
        for entry in entries
    ]
    size = f"size={cfg['tmpfs_mb']}m,nr_inodes=4096"
    for path in cfg["hide"]:
        mode = "1777" if path != cfg["home"] else "0755"
        _mount(libc, "tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode={mode}")
    for path, fd in keep.items():
        os.makedirs(path, exist_ok=True)
        _bind_read_only(libc, fd, path)
    _show_packages(libc, list(cfg["packages"]), shown)
    workdir = "/tmp/work"
    os.mkdir(workdir, 0o700)
    return workdir


def _show_packages(libc: object, sites: list[str], shown: list[tuple[str, int]]) -> None:
    """Cover each site directory with an empty tmpfs, bind the allowed entries back, make it all read-only.

    So a program sees exactly the allowed packages at their real paths (their `$ORIGIN`-relative shared
    libraries still resolve) and nothing else of site-packages, however it edits `sys.path`.
    """
    for site in sites:
        os.makedirs(site, exist_ok=True)
        _mount(libc, "tmpfs", site, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,nr_inodes=4096,mode=0755")
    for path, fd in shown:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.mkdir(path)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o444))
        _bind_read_only(libc, fd, path)
    for site in sites:
        _mount(libc, None, site, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)


def _stay_init() -> None:
    """Fork: the child runs the submission, this process stays PID 1 of the namespace and only waits.

    The submission must not be PID 1, which ignores its own default-action signals (a SIGSEGV raised
    by `raise()`, SIGALRM, SIGTERM). When PID 1 exits every process left in the namespace is killed.
    """
    child = os.fork()
    if child == 0:
        return
    os.closerange(0, 1 << 16)
    status = os.waitpid(child, 0)[1]
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def _drop_privileges(libc: object, cfg: dict, workdir: str) -> None:
    uid = cfg["uid"]
    if uid is not None:
        os.chown(workdir, uid, uid)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif cfg["isolation"] == "namespaces":
        _drop_capabilities(libc)
    if libc is not None:
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # changing uid cleared unshare's --kill-child


def _drop_capabilities(libc: object) -> None:
    """A grader that is not root runs the submission as root of its own user namespace: without this, it
    could unmount the private /tmp or the read-only package view, or remount them writable."""
    for cap in range(64):  # the bounding set, so that no exec gives them back; EINVAL past the last one
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    import ctypes

    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:
        raise OSError(ctypes.get_errno(), "capset: cannot drop the namespace's capabilities")


def _apply_limits(limits: dict) -> None:
    cpu = limits["cpu_s"]
    for name, soft, hard in (
        ("RLIMIT_CPU", cpu, cpu + 1),
        ("RLIMIT_AS", limits["memory_mb"] << 20, limits["memory_mb"] << 20),
        ("RLIMIT_NPROC", limits["max_processes"], limits["max_processes"]),
        ("RLIMIT_FSIZE", limits["max_file_mb"] << 20, limits["max_file_mb"] << 20),
        ("RLIMIT_NOFILE", limits["max_open_files"], limits["max_open_files"]),
        ("RLIMIT_CORE", 0, 0),
    ):
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _opens_for_writing(mode: object, flags: int) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def _audit_hook(workdir: str) -> object:
    """Fallback containment without namespaces: no sockets, programs, ctypes or writes outside `workdir`."""
    root = os.path.realpath(workdir) + os.sep

    def hook(event: str, args: tuple) -> None:
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError(f"{event} is blocked in the sandbox")
        writes = event in _PATH_EVENTS or (event == "open" and _opens_for_writing(args[1], args[2]))
        if writes and isinstance(args[0], (str, bytes)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if not (path + os.sep).startswith(root):
                raise PermissionError(f"{event} outside the working directory is blocked: {path}")

    return hook


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _serve(module: dict, req: object, resp_fd: int, source: str) -> None:
    """Answer each marshalled call request with one JSON line: the return value or the exception text."""
    names = sorted(k for k, v in module.items() if callable(v) and not k.startswith("__"))
    _write_all(resp_fd, ('{"ready":' + dump(names) + "}\n").encode())
    while (frame := read_frame(req)) is not None:
        fn, args, kwargs = marshal.loads(frame)
        try:
            value = module[fn](*args, **kwargs)
            reply = '{"ok":' + dump(value) + "}"
        except MemoryError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the submission's failure is data for the parent
            reply = _failure("exc", exc, source)
        _write_all(resp_fd, reply.encode("utf-8") + b"\n")


def _text(message: str) -> str:
    return dump(message[:2000])


def _failure(key: str, exc: BaseException, source: str) -> str:
    """`{"exc":"ZeroDivisionError: division by zero","line":3,"tb":"Traceback ..."}`: the line is that of
    the deepest frame in the submission, so the grader can name the line that failed, not an exit status."""
    import linecache
    import traceback  # only once something failed: importing them costs more than a run's start-up

    linecache.cache["main.py"] = (len(source), None, source.splitlines(True), "main.py")
    line, tb = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "main.py":
            line = tb.tb_lineno
        tb = tb.tb_next
    line = line if type(line) is int else None
    trace = "".join(traceback.format_exception(exc))[-4000:]
    return f'{{"{key}":{_text(f"{type(exc).__name__}: {exc}")},"line":{dump(line)},"tb":{dump(trace)}}}'


def _run(cfg: dict, req: object, resp_fd: int) -> None:
    source = cfg["files"]["main.py"]
    namespace = {"__name__": "__main__" if cfg["mode"] == "run" else "solution", "__builtins__": __builtins__}
    if cfg["mode"] == "run":
        req.close()
        os.close(resp_fd)
        exec(compile(source, "main.py", "exec"), namespace)  # noqa: S102 - this is the sandbox
        return
    try:
        exec(compile(source, "main.py", "exec"), namespace)  # noqa: S102 - as above
    except MemoryError:
        raise
    except BaseException as exc:
        _write_all(resp_fd, (_failure("load_error", exc, source) + "\n").encode())
        raise
    _serve(namespace, req, resp_fd, source)


def main(argv: list[str]) -> None:
    sys.dont_write_bytecode = True
    req, resp_fd = os.fdopen(int(argv[1]), "rb"), int(argv[2])
    cfg = marshal.loads(read_frame(req) or b"")
    namespaces = cfg["isolation"] == "namespaces"
    libc = _libc() if namespaces or cfg["uid"] is not None else None
    workdir = _isolate_filesystem(libc, cfg) if namespaces else cfg["workdir"]
    if namespaces:
        _stay_init()
    for name, text in cfg["files"].items():
        if name != "main.py":
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as fh:
                fh.write(text)
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR="/tmp" if namespaces else workdir)
    _drop_privileges(libc, cfg, workdir)
    _apply_limits(cfg["limits"])
    sys.argv = ["main.py"]
    sys.path.extend(cfg["path"])  # after the standard library, as `site` would put site-packages
    if not namespaces:
        if cfg["path"]:
            import ctypes  # noqa: F401 - numpy, scipy and pandas import it, which the hook would then refuse
        sys.addaudithook(_audit_hook(workdir))
    try:
        _run(cfg, req, resp_fd)
    except MemoryError:
        sys.stderr.write("MemoryError: the submission ran out of memory\n")
        os._exit(EXIT_MEMORY)
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)
