"""LaTeX clean-up, exact number literals and LaTeX -> sympy-syntax translation for the math grader.

Everything here is pure Python (no sympy import) so the grader's fast path stays in the calling
process. `to_sympy_syntax` emits a string over a small alphabet (digits, single-letter symbols, a
whitelist of function names, `+-*/()`, commas); the sympy worker parses only such strings, so model
text never reaches an `eval` with anything but arithmetic in it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

MAX_DEPTH = 40
MAX_POWER_DIGITS = 5000

_TEXT_COMMANDS = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\left|\\right|\\big|\\Big|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}")
_DELIMITERS = re.compile(r"^\\\[|\\\]$|^\\\(|\\\)$")
_SUPERSCRIPT_UNIT = re.compile(r"(?<=\d)\s*(km|cm|mm|dm|m)([\u00b2\u00b3])")
_CURRENCY = re.compile(r"[\u20ac\u00a3\u00a5\u20b9]")
_BRACED_SUBSCRIPT = re.compile(r"_\{(\w+)\}(?!\w)")
_GLUED_GROUPING = re.compile(r"(?<=\d),\\!\s*(?=\d)")
_BRACED_COMMA = re.compile(r"(?<=\d)\s*\{\s*,\s*\}\s*(?=\d)")
_WHITESPACE = re.compile(r"\s+")
_TRAILING_BACKSLASH = re.compile(r"(?<!\\)\\$")
_TRIG = re.compile(r"\\(?:sin|cos|tan|sec|csc|cot)\b")
_TRIG_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)")
_SIMPLE_REPLACEMENTS = {
    "\u2212": "-",
    "\u2013": "-",
    "\u00d7": "\\times ",
    "\u00b7": "\\cdot ",
    "\u00f7": "\\div ",
    "\u221e": "\\infty ",
    "\u03c0": "\\pi ",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2205": "\\emptyset ",
    "\u222a": "\\cup ",
    "\u221a": "\\sqrt",
    "\\dfrac": "\\frac",
    "\\dbinom": "\\binom",
    "\\tbinom": "\\binom",
    "\\tfrac": "\\frac",
    "\\cfrac": "\\frac",
    "\\leq": "\\le",
    "\\neq": "\\ne ",
    "!=": "\\ne ",
    "\\geq": "\\ge",
    "\\leqslant": "\\le",
    "\\geqslant": "\\ge",
    "\\lt": "<",
    "\\gt": ">",
    "\\varnothing": "\\emptyset",
    "\\%": "%",
    "\\$": "",
    "\\{": "\\lbrace ",
    "\\}": "\\rbrace ",
    "\\lbrace": "\\lbrace ",
    "\\rbrace": "\\rbrace ",
}
_REPLACE = re.compile("|".join(re.escape(k) for k in sorted(_SIMPLE_REPLACEMENTS, key=len, reverse=True)))

_DECIMAL = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(rf"(?P<sign>[-+]?)(?P<num>{_DECIMAL})(?:[eE](?P<exp>[-+]?\d+))?")
_SCI_LATEX = re.compile(
    rf"(?P<sign>[-+]?)(?P<num>{_DECIMAL})\s*(?:\\times|\\cdot|\*|x)\s*10\s*(?:\^|\*\*)\s*\{{?\s*(?P<exp>[-+]?\d+)\s*\}}?"
)
_POWER_OF_TEN = re.compile(r"(?P<sign>[-+]?)10\s*\^\s*\{?\s*(?P<exp>[-+]?\d+)\s*\}?")
_FRACTION = re.compile(rf"(?P<sign>[-+]?)(?P<num>-?{_DECIMAL})\s*/\s*(?P<den>-?{_DECIMAL})")
_LATEX_FRACTION = re.compile(r"(?P<sign>[-+]?)\\frac\s*\{\s*(?P<num>-?\d+)\s*\}\s*\{\s*(?P<den>-?\d+)\s*\}")
_SHORT_FRACTION = re.compile(r"(?P<sign>[-+]?)\\frac\s*(?P<num>\d)(?P<den>\d)")
_SHORT_MIXED = re.compile(r"(?P<sign>[-+]?)(?P<whole>\d+)\s*\\frac\s*(?P<num>\d)(?P<den>\d)")
_PLAIN_MIXED = re.compile(r"(?P<sign>[-+]?)(?P<whole>\d+)\s+(?P<num>\d+)\s*/\s*(?P<den>\d+)")
_DECIMAL_COMMA = re.compile(r"[-+]?(?:0,\d+|\d+,\d{1,2}|\d{4,},\d+)")
_MIXED = re.compile(
    r"(?P<sign>[-+]?)(?P<whole>\d+)\s*\\frac\s*\{\s*(?P<num>\d+)\s*\}\s*\{\s*(?P<den>\d+)\s*\}"
)
_REPEATING = re.compile(
    r"(?P<sign>[-+]?)(?P<int>\d*)\.(?P<fixed>\d*)\s*(?:\\overline|\\dot)\s*\{?\s*(?P<rep>\d+)\s*\}?"
)
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:(?:,|\{,\}|\s|\\,|\u2009|\u202f)\d{3})+(?:\.\d+)?")


@lru_cache(maxsize=4096)
def clean(text: str) -> str:
    """Strip math delimiters, spacing commands, `\\text{}` wrappers and degree signs; unify symbols.

    Cached: the grader cleans the same reference for every sample of a prompt.

    >>> clean(r"$\\dfrac{1}{2}\\,\\text{cm}$.")
    '\\\\frac{1}{2} cm'
    >>> clean("30^\\\\circ")
    '30'
    """
    s = _DELIMITERS.sub("", text.strip()).replace("\\$", "").replace("$", "")
    s = _REPLACE.sub(lambda m: _SIMPLE_REPLACEMENTS[m.group(0)], s)
    s = _SUPERSCRIPT_UNIT.sub(r" \1\2", s)
    s = _CURRENCY.sub("", s).replace("\u00b2", "^2").replace("\u00b3", "^3")
    if _TRIG.search(s):
        s = _TRIG_DEGREES.sub(r"(\1\\pi/180)", s)
    s = _DEGREES.sub("", s)
    s = _BRACED_SUBSCRIPT.sub(r"_\1", s)
    s = _GLUED_GROUPING.sub(",", s)
    s = _BRACED_COMMA.sub("{,}", s)
    s = _SPACING.sub(" ", s)
    for _ in range(3):
        s = _TEXT_COMMANDS.sub(lambda m: " " + m.group(1).strip() + " ", s)
    s = _TRAILING_BACKSLASH.sub("", _WHITESPACE.sub(" ", s).strip()).strip()
    return s.rstrip(".").strip() if not s.endswith("...") else s


def _signed(sign: str, value: Fraction) -> Fraction:
    return -value if sign == "-" else value


def _repeating(m: re.Match[str]) -> Fraction:
    whole = int(m.group("int") or 0)
    fixed, rep = m.group("fixed"), m.group("rep")
    head = Fraction(int(fixed or 0), 10 ** len(fixed))
    tail = Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
    return _signed(m.group("sign"), whole + head + tail)


def parse_number(text: str) -> Fraction | None:
    """An exact value for a plain numeric literal, or `None` if `text` is anything else.

    Integers (with thousands separators), decimals, `1.2e-6`, `1.2\\times10^{-6}`, `3/4`,
    `\\frac{3}{4}`, mixed numbers `2\\frac{1}{4}` and repeating decimals `0.\\overline{3}`.

    >>> parse_number("1,234,567"), parse_number("-0.75"), parse_number(r"\\frac{-3}{4}")
    (Fraction(1234567, 1), Fraction(-3, 4), Fraction(-3, 4))
    >>> parse_number(r"0.1\\overline{6}"), parse_number(r"1.2\\times 10^{-6}") == Fraction(12, 10**7)
    (Fraction(1, 6), True)
    >>> parse_number("x+1") is None
    True
    """
    s = text.strip()
    if len(s) > 200:
        return None
    if _DECIMAL_COMMA.fullmatch(s):
        s = s.replace(",", ".")
    elif _THOUSANDS.fullmatch(s):
        s = re.sub(r"\{,\}|\\,|[,\s\u2009\u202f]", "", s)
    try:
        if m := _PLAIN_NUMBER.fullmatch(s):
            exp = int(m.group("exp") or 0)
            if abs(exp) > MAX_POWER_DIGITS:
                return None
            return _signed(m.group("sign"), Fraction(m.group("num")) * Fraction(10) ** exp)
        if m := _POWER_OF_TEN.fullmatch(s):
            exp = int(m.group("exp"))
            return None if abs(exp) > MAX_POWER_DIGITS else _signed(m.group("sign"), Fraction(10) ** exp)
        if m := _SCI_LATEX.fullmatch(s):
            exp = int(m.group("exp"))
            if abs(exp) > MAX_POWER_DIGITS:
                return None
            return _signed(m.group("sign"), Fraction(m.group("num")) * Fraction(10) ** exp)
        if m := _FRACTION.fullmatch(s) or _LATEX_FRACTION.fullmatch(s) or _SHORT_FRACTION.fullmatch(s):
            return _signed(m.group("sign"), Fraction(m.group("num")) / Fraction(m.group("den")))
        if m := _MIXED.fullmatch(s) or _SHORT_MIXED.fullmatch(s) or _PLAIN_MIXED.fullmatch(s):
            value = int(m.group("whole")) + Fraction(int(m.group("num")), int(m.group("den")))
            return _signed(m.group("sign"), value)
        if m := _REPEATING.fullmatch(s):
            return _repeating(m)
    except ZeroDivisionError:
        return None
    return None


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


class LatexError(ValueError):
    """The text is not an arithmetic expression the grader can hand to sympy."""


class TooComplex(LatexError):
    """The text is too long, too deeply nested or too large to evaluate safely: an error grade."""


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
