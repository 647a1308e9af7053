"""Symbolic answer comparison in persistent sympy worker processes with a hard time limit.

Why a process: sympy can run for ever on inputs such as `9^{9^{9^9}}` and cannot be interrupted
from another thread, and `signal.alarm` only works in the main thread. Each calling thread borrows
a worker; if a comparison overruns its time limit the worker is killed and a fresh one is spawned
for the next call, so the limit holds in any thread or process. Workers are reused between calls,
so the cost of importing sympy is paid once, and the calling process never imports sympy.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import warnings
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import Any

from graders.math.comparison import IRRATIONAL_DIGITS, RATIONAL_DIGITS, compare
from graders.math.parsing import Node

STARTUP_TIMEOUT = 120.0
REL_TOL = 1e-9
MEMORY_LIMIT = 2 * 1024**3
_WORKER = "from graders.math.sympy_worker import _serve; _serve()"


class SympyFailure(Exception):
    """The symbolic comparison could not finish (time limit, or the worker died); the worker was replaced."""


class SympyTimeout(SympyFailure):
    """The comparison ran past its time limit."""


class _Worker:
    """One worker process running `_serve`, talked to over its stdin/stdout pipes.

    A plain subprocess rather than multiprocessing's spawn, so callers need no `__main__` guard; started
    with `-c` rather than `-m`, since `graders.math` imports this module and runpy would run it twice.
    """

    def __init__(self) -> None:
        to_child, from_parent = os.pipe()[::-1]
        from_child, to_parent = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER], stdin=from_parent, stdout=to_parent, env=env
        )
        os.close(from_parent)
        os.close(to_parent)
        self.send_conn = Connection(to_child, readable=False)
        self.conn = Connection(from_child, writable=False)
        self.ready = False

    def call(self, payload: Any, timeout: float) -> Any:
        if not self.ready:
            if not self.conn.poll(STARTUP_TIMEOUT):
                raise RuntimeError(f"sympy worker did not start within {STARTUP_TIMEOUT:.0f} s")
            self.conn.recv()
            self.ready = True
        self.send_conn.send(payload)
        if not self.conn.poll(timeout):
            raise SympyTimeout(f"symbolic comparison exceeded {timeout:g} s")
        return self.conn.recv()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.send_conn.close()
        self.conn.close()


_idle: list[_Worker] = []
_idle_lock = threading.Lock()
_owner_pid = os.getpid()


def _acquire() -> _Worker:
    global _owner_pid
    with _idle_lock:
        if _owner_pid != os.getpid():
            _idle.clear()
            _owner_pid = os.getpid()
        if _idle:
            return _idle.pop()
    return _Worker()


def _release(worker: _Worker) -> None:
    with _idle_lock:
        if len(_idle) < (os.cpu_count() or 1) and worker.proc.poll() is None:
            _idle.append(worker)
            return
    worker.kill()


def shut_down() -> None:
    """Stop this process's idle workers; the next comparison starts a fresh one (with empty caches)."""
    with _idle_lock:
        stopping = list(_idle) if _owner_pid == os.getpid() else []
        _idle.clear()
    for worker in stopping:
        worker.kill()


def warm_up() -> None:
    """Start one worker and wait until sympy is imported, so the first graded sample is not slowed."""
    worker = _acquire()
    worker.call(None, STARTUP_TIMEOUT)
    _release(worker)


def symbolic_compare(
    a: Node, b: Node, timeout: float, latex_fallback: bool = True
) -> tuple[str | None, str | None]:
    """(rule, error) from comparing two parsed answers with sympy; raises `SympyTimeout` after `timeout` s.

    latex_fallback: convert "latex" nodes (LaTeX our translator does not know) with latex2sympy2_extended;
    when False they compare only as identical text.
    A worker that overran or died is killed and a fresh one is started at once, ready for the next call.
    """
    worker = _acquire()
    try:
        result = worker.call((a, b, latex_fallback), timeout)
    except BaseException as exc:
        worker.kill()
        _release(_Worker())
        if isinstance(exc, (EOFError, OSError)):
            raise SympyFailure(f"sympy worker died: {type(exc).__name__}") from None
        raise
    _release(worker)
    return result


def _serve() -> None:
    """Worker loop: import sympy once, then answer (a, b) comparison requests until stdin closes."""
    requests, conn = Connection(0, writable=False), Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    warnings.simplefilter("ignore")  # sympy deprecation notices about model text are not the caller's concern
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    equality = _SympyEquality()
    equality(
        ("expr", "sqrt(2)"), ("num", Fraction(1414, 1000))
    )  # first numeric evaluation loads mpmath paths
    conn.send("ready")
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        if request is None:
            conn.send((None, None))
            continue
        try:
            equality.latex_fallback = request[2]
            equality.verdicts.clear()
            conn.send((compare(request[0], request[1], equality), None))
        except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - report any sympy failure, keep serving
            conn.send((None, f"{type(exc).__name__}: {exc}"[:300]))


class _Unconvertible(Exception):
    """A node with no sympy form here (a structure, or LaTeX with the fallback off): compares as text."""


class _SympyEquality:
    """The `symbolic` callback of `compare`: parse restricted syntax, compare exactly or numerically."""

    def __init__(self) -> None:
        import sympy
        from sympy.parsing import sympy_parser as sp

        self.sympy = sympy
        self.parse_expr = sp.parse_expr
        self.transformations = sp.standard_transformations + (sp.implicit_multiplication_application,)
        names = "Integer Float Rational Symbol Function sqrt root log sin cos tan cot sec csc asin acos atan"
        names += " sinh cosh tanh exp pi oo E I Abs binomial factorial factorial2 Matrix gcd lcm"
        self.globals: dict[str, Any] = {n: getattr(sympy, n) for n in names.split()}
        self.globals["__builtins__"] = {}
        self.cache: dict[Node, Any] = {}
        self.verdicts: dict[tuple[Node, Node, bool, bool], bool] = {}
        self.latex_fallback = True
        from latex2sympy2_extended import latex2sympy

        self.latex2sympy = latex2sympy
        for warm in (r"\frac{1}{2}", r"\sum_{k=0}^{n} a_k", r"\begin{pmatrix}1 & 2\\3 & 4\end{pmatrix}"):
            latex2sympy(warm)  # the first conversions build the ANTLR parser's prediction tables

    def to_sympy(self, node: Node) -> Any:
        kind, value = node[0], node[1]
        if kind == "num":
            return self.sympy.Rational(value.numerator, value.denominator)
        if kind == "inf":
            return self.sympy.oo if value > 0 else -self.sympy.oo
        if kind == "matrix":
            return self.sympy.Matrix([[self.to_sympy(cell) for cell in row] for row in value])
        if kind not in ("expr", "latex") or (kind == "latex" and not self.latex_fallback):
            raise _Unconvertible(kind)
        if node not in self.cache:
            if len(self.cache) > 10000:
                self.cache.clear()
            self.cache[node] = self._convert(node)
        return self.cache[node]

    def _convert(self, node: Node) -> Any:
        if node[0] == "latex":
            return self.latex2sympy(node[1])
        return self.parse_expr(
            node[1], local_dict={}, global_dict=dict(self.globals), transformations=self.transformations
        )

    def __call__(self, a: Node, b: Node, proportional: bool = False) -> bool:
        """Equal as numbers or expressions; remembered within one request, where set and alternative
        readings repeat the same pairs."""
        key = (a, b, proportional, self.latex_fallback)
        if key not in self.verdicts:
            if len(self.verdicts) > 10000:
                self.verdicts.clear()
            self.verdicts[key] = self._equal(a, b, proportional)
        return self.verdicts[key]

    def _equal(self, a: Node, b: Node, proportional: bool) -> bool:
        try:
            x, y = self.to_sympy(a), self.to_sympy(b)
        except _Unconvertible:
            return a == b
        if x == y:
            return True
        if not hasattr(x, "has") or not hasattr(y, "has"):
            return False
        if str(x) == str(y):  # same printed form, symbols that differ only in assumptions
            return True
        unevaluated = (self.sympy.Sum, self.sympy.Product, self.sympy.Integral, self.sympy.Limit)
        if x.has(*unevaluated) or y.has(*unevaluated):  # sampling or simplifying these can run for ever
            return False
        if proportional:
            return self._proportional(x, y)
        if isinstance(x, self.sympy.MatrixBase) or isinstance(y, self.sympy.MatrixBase):
            return x.shape == getattr(y, "shape", None) and bool(self.sympy.simplify(x - y).is_zero_matrix)
        rounded = [n for n in (a, b) if len(n) == 3]
        if len(rounded) == 1 and not (x.is_Rational and y.is_Rational):
            places, significant = rounded[0][2]
            exact = y if rounded[0] is a else x
            needed = IRRATIONAL_DIGITS if self._irrational(exact) else RATIONAL_DIGITS
            if significant >= needed and self._rounded(x, y, self.sympy.Rational(1, 10**places)):
                return True
        if x.has(self.sympy.oo, -self.sympy.oo, self.sympy.zoo) or y.has(self.sympy.oo, self.sympy.zoo):
            return False
        free = sorted((x - y).free_symbols, key=str)
        if not free:
            return False if (x.is_Rational and y.is_Rational) else self._close(x, y)
        return all(self._close(x.xreplace(p), y.xreplace(p)) for p in self._points(free))

    def _rounded(self, x: Any, y: Any, tolerance: Any) -> bool:
        """One side was written with rounded decimals: equal to within its last place, at sample points
        in (0, 1) when there are free symbols (so a rounded coefficient is not magnified)."""
        free = sorted(x.free_symbols | y.free_symbols, key=str)
        rng = random.Random(4321)
        points = [{v: self.sympy.Rational(rng.randint(1, 9), 10) for v in free} for _ in range(4)]
        for point in points if free else [{}]:
            difference = self.sympy.N((x - y).xreplace(point), 30)
            if not (difference.is_number and abs(difference) < tolerance):
                return False
        return True

    def _irrational(self, expr: Any) -> bool:
        """Holds a constant no decimal writes exactly (pi, e, a root, a logarithm or trigonometric value)."""
        sp = self.sympy
        if expr.has(sp.pi, sp.E, sp.log, sp.exp, sp.sin, sp.cos, sp.tan, sp.asin, sp.acos, sp.atan):
            return True
        return any(p.exp.is_Rational and not p.exp.is_Integer for p in expr.atoms(sp.Pow))

    def _points(self, free: list[Any]) -> list[dict[Any, Any]]:
        rng = random.Random(1234)
        return [
            {s: self.sympy.Rational(rng.randint(11, 97), rng.randint(7, 23)) for s in free} for _ in range(4)
        ]

    def _close(self, x: Any, y: Any) -> bool:
        """Equal as numbers: exactly for rationals, else within a relative tolerance at 30 digits."""
        if x.is_Rational and y.is_Rational:
            return bool(x == y)
        vx, vy = self.sympy.N(x, 30), self.sympy.N(y, 30)
        if not (vx.is_number and vy.is_number) or vx.has(self.sympy.nan) or vy.has(self.sympy.nan):
            return False
        diff, scale = abs(vx - vy), max(abs(vx), abs(vy))
        try:
            return bool(diff == 0) or bool(diff <= REL_TOL * scale)
        except TypeError:
            return False

    def _proportional(self, d1: Any, d2: Any) -> bool:
        """Two equations `d1 = 0`, `d2 = 0` are the same when d1 / d2 is one non-zero constant."""
        free = sorted(d1.free_symbols | d2.free_symbols, key=str)
        if d1.free_symbols != d2.free_symbols:
            return False
        ratios = []
        for point in self._points(free):
            v2 = d2.xreplace(point)
            if v2 == 0:
                continue
            ratios.append(d1.xreplace(point) / v2)
        return bool(ratios) and ratios[0] != 0 and all(self._close(r, ratios[0]) for r in ratios[1:])
