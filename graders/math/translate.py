"""LaTeX -> restricted sympy syntax for the math grader's sympy worker.

`to_sympy_syntax` emits a string over a small alphabet (digits, single-letter symbols, subscripted
symbols, a whitelist of function names, `+-*/()`, commas); the sympy worker parses only such strings,
so model text never reaches an `eval` with anything but arithmetic in it. LaTeX it does not know raises
`LatexError`, and the parser then hands the source to latex2sympy2_extended in the worker instead.
"""

from __future__ import annotations

import re
from fractions import Fraction

from graders.math.latex import MAX_DEPTH, MAX_POWER_DIGITS, LatexError, TooComplex

FUNCTIONS = frozenset(
    [
        "sqrt",
        "root",
        "log",
        "sin",
        "cos",
        "tan",
        "cot",
        "sec",
        "csc",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "tanh",
        "exp",
        "pi",
        "oo",
        "Abs",
        "binomial",
        "factorial",
        "Matrix",
        "gcd",
        "lcm",
    ]
)
_LATEX_FUNCTIONS = {
    "ln": "log",
    "log": "log",
    "exp": "exp",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "pi": "pi",
    "infty": "oo",
    "cdot": "*",
    "times": "*",
    "div": "/",
}
_MATRIX_ENV = re.compile(r"\{([pbBvV]?matrix)\}")
_APPLIED = frozenset(
    [
        "ln",
        "log",
        "sin",
        "cos",
        "tan",
        "cot",
        "sec",
        "csc",
        "arcsin",
        "arccos",
        "arctan",
        "sinh",
        "cosh",
        "tanh",
    ]
)
_CONSTANTS = {"e": "E", "i": "I", "E": "E", "I": "I"}


class _Translator:
    """A small recursive-descent pass over LaTeX: groups, `\\frac`, `\\sqrt`, `^`, known commands."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def group(self, depth: int) -> str:
        """One argument: a `{...}` group or a single token."""
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1
        if self.i >= len(self.s):
            raise LatexError("missing argument")
        if self.s[self.i] == "{":
            self.i += 1
            inner = self.run(depth + 1, closer="}")
            return f"({inner})"
        if self.s[self.i] == "\\":
            return self.command(depth)
        self.i += 1
        return self.s[self.i - 1]

    def command(self, depth: int) -> str:
        m = re.compile(r"\\([A-Za-z]+)").match(self.s, self.i)
        if not m:
            raise LatexError(f"stray backslash in {self.s!r}")
        self.i = m.end()
        name = m.group(1)
        if name == "frac" or name == "binom":
            num, den = self.group(depth), self.group(depth)
            return f"({num}/{den})" if name == "frac" else f"binomial({num},{den})"
        if name == "sqrt":
            if self.i < len(self.s) and self.s[self.i] == "[":
                close = self.s.find("]", self.i)
                if close < 0:
                    raise LatexError("unclosed root index")
                index = _Translator(self.s[self.i + 1 : close]).run(depth + 1)
                self.i = close + 1
                return f"root({self.group(depth)},{index})"
            return f"sqrt({self.group(depth)})"
        if name == "log" and self.s.startswith("_", self.i):
            return self.log_base(depth)
        if name in _LATEX_FUNCTIONS:
            return f" {_LATEX_FUNCTIONS[name]}{self.bare_argument(name)} "
        if name == "begin":
            return self.matrix(depth)
        raise LatexError(f"unsupported command \\{name}")

    def matrix(self, depth: int) -> str:
        """`\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}` as `Matrix(((a, b), (c, d)))`, for matrix arithmetic."""
        m = _MATRIX_ENV.match(self.s, self.i)
        if not m:
            raise LatexError("unsupported environment")
        end = self.s.find(f"\\end{{{m.group(1)}}}", m.end())
        if end < 0 or "\\begin" in self.s[m.end() : end]:
            raise LatexError("unclosed or nested environment")
        body, self.i = self.s[m.end() : end], end + len(f"\\end{{{m.group(1)}}}")
        rows = [r for r in re.split(r"\\\\", body) if r.strip()]
        cells = [[_Translator(c.strip()).run(depth + 1) for c in r.split("&")] for r in rows]
        if not cells or len({len(r) for r in cells}) != 1:
            raise LatexError("ragged matrix")
        return "Matrix((" + ",".join("(" + ",".join(r) + ",)" for r in cells) + ",))"

    def log_base(self, depth: int) -> str:
        """`\\log_2 8`, `\\log_{b}(x)` as `log(8, 2)`."""
        self.i += 1
        digits = re.compile(r"\d+(?=[\s(\\{])").match(self.s, self.i)  # `_{10}` that clean() unbraced
        if digits:
            base, self.i = digits.group(0), digits.end()
        else:
            base = self.group(depth)
        argument = self.bare_argument("log")
        if not argument:
            while self.i < len(self.s) and self.s[self.i] == " ":
                self.i += 1
            if self.i >= len(self.s) or self.s[self.i] not in "({":
                raise LatexError("logarithm without an argument")
            closer = ")" if self.s[self.i] == "(" else "}"
            self.i += 1
            argument = f"({self.run(depth + 1, closer=closer)})"
        return f" log({argument},{base}) "

    def bare_argument(self, name: str) -> str:
        """`\\sin x`, `\\log 8`, `\\cos 2x`: a function applied without parentheses to a letter, a number or
        a number times a letter."""
        if name not in _APPLIED:
            return ""
        m = re.compile(r"\s*([A-Za-z](?![A-Za-z])|\d+(?:\.\d+)?(?:[A-Za-z](?![A-Za-z]))?)").match(
            self.s, self.i
        )
        if not m:
            return ""
        self.i = m.end()
        return f"({m.group(1)})"

    def subscript(self, out: list[str], depth: int) -> str:
        """`v_0`, `r_{0}`, `x_{n}` become one symbol `v_0`; a subscript on anything but a letter is refused."""
        sub = re.sub(r"[()\s]", "", self.group(depth))
        if not (out and out[-1][-1:].isalpha() and re.fullmatch(r"[A-Za-z0-9]{1,8}", sub)):
            raise LatexError("subscript on something other than a letter")
        return f"_{sub}"

    def run(self, depth: int = 0, closer: str | None = None) -> str:
        if depth > MAX_DEPTH:
            raise TooComplex(f"nested more than {MAX_DEPTH} levels deep")
        out: list[str] = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            if closer is not None and ch == closer:
                self.i += 1
                return "".join(out)
            if ch == "{":
                out.append(self.group(depth))
            elif ch == "\\":
                out.append(self.command(depth))
            elif ch == "^":
                self.i += 1
                out.append(f"**{self.group(depth)}")
            elif ch == "_":
                self.i += 1
                out.append(self.subscript(out, depth))
            else:
                out.append(ch)
                self.i += 1
        if closer is not None:
            raise LatexError("unbalanced braces")
        return "".join(out)


def _identifiers(expr: str) -> str:
    """Keep whitelisted function names; split any other word into single-letter symbols."""

    def split(m: re.Match[str]) -> str:
        word, sub = m.group(1), m.group(2)
        if word in FUNCTIONS and not sub:
            return f" {word} "
        letters = [_CONSTANTS.get(c, c) for c in word]
        if sub:
            letters[-1] = word[-1] + sub
        return " " + " ".join(letters) + " "

    return re.sub(r"([A-Za-z]+)(_[A-Za-z0-9]+)?", split, expr)


def _decimals_exact(expr: str) -> str:
    """Rewrite decimal literals as exact ratios so 0.1 stays 1/10 inside sympy."""

    def exact(m: re.Match[str]) -> str:
        value = Fraction(m.group(0))
        return f"({value.numerator}/{value.denominator})"

    return re.sub(r"(?<![\w.])\d*\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+", exact, expr)


def _check_powers(expr: str) -> None:
    """Reject towers such as 9^(9^(9^9)) before sympy tries to expand them."""
    if re.search(r"\*\*\s*\(*\s*\d+\s*\)*\s*\*\*", expr):
        raise TooComplex("exponent tower is too large to evaluate")
    for m in re.finditer(r"\*\*\s*\(*\s*(\d+)", expr):
        if len(m.group(1)) > 4 and int(m.group(1)) > MAX_POWER_DIGITS:
            raise TooComplex("exponent is too large to evaluate")


def to_sympy_syntax(text: str) -> str:
    """Translate a cleaned LaTeX/plain expression into the restricted syntax the sympy worker parses.

    >>> to_sympy_syntax(r"\\frac{x+1}{2}\\sqrt{3}")
    '(( x +1)/(2)) sqrt ((3))'
    >>> to_sympy_syntax("0.5e^{-x}")
    '(1/2) E **(- x )'
    """
    if len(text) > 500:
        raise TooComplex("expression longer than 500 characters")
    expr = _Translator(text).run()
    expr = _identifiers(expr)
    expr = re.sub(r"\s+", " ", expr).strip()
    if not re.fullmatch(r"[0-9A-Za-z_+\-*/()., !]*", expr) or "__" in expr or re.search(r"\d_", expr):
        raise LatexError(f"unsupported characters in {text!r}")
    _check_powers(expr)
    return _decimals_exact(expr)
