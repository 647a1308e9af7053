"""Structured reading of a math answer, and structural comparison of two readings.

An answer is parsed into a small tree of picklable tuples ("nodes"):

    ("num", Fraction)   ("inf", +1 | -1)   ("expr", sympy_syntax)   ("text", words)
    ("latex", source)  -- LaTeX our translator does not know, for latex2sympy2_extended in the worker
    ("set", nodes)   ("tuple", nodes)   ("matrix", rows)   ("intervals", ((lo, closed, hi, closed), ...))
    ("eq", lhs, rhs)   ("alt", nodes)  -- several readings of ambiguous text, e.g. "(1, 2)" or "50%"

`graders.math.comparison` walks two trees; scalar pairs it cannot settle exactly (anything involving "expr") go to a
`symbolic` callback, which is the sympy worker in `graders.math.sympy_worker`. In the calling process that
callback raises `NeedsSympy`, so exact and structural answers never pay for sympy.

Rules worth knowing: a percentage `p%` equals both `p` and `p/100`; units and degree signs after a
number are dropped; `x = 3` also reads as `3`; a bare comma list reads as a set or a tuple;
`(a, b)` reads as a tuple or an open interval; rationals compare exactly, so 1/3 != 0.33.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from graders.math.latex import LatexError, TooComplex, clean, parse_number
from graders.math.translate import FUNCTIONS, to_sympy_syntax

Node = tuple[Any, ...]
MAX_LENGTH = 1000

_INFINITY = {"\\infty": 1, "+\\infty": 1, "infinity": 1, "inf": 1, "oo": 1, "-\\infty": -1, "-infinity": -1}
_REALS = {
    "\\mathbb{R}",
    "\\mathbb R",
    "\\R",
    "\u211d",
    "\\mathbb{R}^1",
    "all real numbers",
    "(-\\infty,\\infty)",
}
_EMPTY = {"\\emptyset", "\\lbrace \\rbrace", "\\lbrace\\rbrace", "{}", "empty set"}
_MATRIX = re.compile(r"\\begin\{([pbBvV]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}", re.DOTALL)
LHS = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?'?|[A-Za-z]\(\s*[A-Za-z]\s*\)")
_INEQUALITY = re.compile(r"\\le|\\ge|<=|>=|<|>|\\ne")
_UNIT_TAIL = re.compile(
    r"(?P<value>.*?[\d}%])\s*(?P<unit>(?:(?<=\s)(?:[A-Za-z]{2,}|cm|mm|km|kg|mg|ml|m|g|s|h|L)|[A-Za-z]{3,})"
    r"(?:\s*\^\{?-?\d\}?|\d)?(?:\s*/\s*[A-Za-z]+(?:\^\{?-?\d\}?)?)?(?:\s+[A-Za-z]+)*)"
)
_LATEX_MARKUP = re.compile(r"\\[A-Za-z]+|[\^_{}]")
_BASE = re.compile(r"(\d+)_\{?(\d{1,2})\}?")
_EXPR_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)")
_CASES = re.compile(r"\\begin\{cases\}(.*)\\end\{cases\}", re.DOTALL)
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:(a\.?m\.?)|(p\.?m\.?))?", re.IGNORECASE)
_VARIABLE = re.compile(r"[A-Za-z](?:\([A-Za-z]\))?")
_FLIP = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le", "<=": ">=", ">=": "<="}
_TEXT = re.compile(r"[A-Za-z][A-Za-z ,'\-]*[A-Za-z]")
_WORD_SPLIT = re.compile(
    r"\s+(?:or|and)\s+|\\(?:text\s*)?(?:or|and)\b|(?<=[)\]])\s*(?:or|and)\s*(?=[(\[])|(?<=[\d)\]])or(?=[A-Z])"
)
_DECIMAL_DIGITS = re.compile(
    r"[-+]?(\d*)\.(\d+)(?:\s*(?:\\times|\\cdot)\s*10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?)?"
)
_UNITS_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
_TEENS_WORDS = " sixteen seventeen eighteen nineteen twenty"
_NUMBER_WORDS = {w: i for i, w in enumerate((_UNITS_WORDS + _TEENS_WORDS).split())}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate(("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"))
}
_FRACTION_WORDS = {"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4}


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside any (), [], {} nesting.

    >>> split_top("(1,2), \\\\frac{1}{2}, [3,4)")
    ['(1,2)', '\\\\frac{1}{2}', '[3,4)']
    """
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth <= 0 and text.startswith(sep, i):
            parts.append(text[start:i].strip())
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(text[start:].strip())
    return parts


def _alt(nodes: list[Node]) -> Node:
    flat = [m for n in nodes for m in (n[1] if n[0] == "alt" else (n,))]
    unique = list(dict.fromkeys(flat))
    return unique[0] if len(unique) == 1 else ("alt", tuple(unique))


def scalar(s: str) -> Node:
    """A single value: number, percentage, infinity, value with units, text, or expression."""
    if s.endswith("%"):
        inner = scalar(s[:-1].strip())
        if inner[0] == "num":
            return _alt([inner, ("num", inner[1] / 100)])
        return inner if inner[0] == "text" else _alt([inner, ("expr", f"({inner[1]})/100")])
    if s in _REALS:
        return ("intervals", ((("inf", -1), False, ("inf", 1), False),))
    if s in _INFINITY:
        return ("inf", _INFINITY[s])
    if s in _EMPTY:
        return ("set", ())
    number = parse_number(s)
    if number is not None:
        return _number_node(s, number)
    if (based := _base_number(s)) is not None:
        return ("num", based)
    if m := _TIME.fullmatch(s):
        hours = int(m.group(1)) % 12 if m.group(4) or m.group(5) else int(m.group(1))
        return ("time", (hours + 12 * bool(m.group(5))) * 3600 + int(m.group(2)) * 60 + int(m.group(3) or 0))
    if (words := _number_words(s)) is not None:
        return ("num", words)
    unit = _UNIT_TAIL.fullmatch(s)
    if unit and not any(w in FUNCTIONS for w in re.findall(r"[A-Za-z]+", unit.group("unit"))):
        value = scalar(unit.group("value").strip())
        if value[0] in ("num", "alt"):
            return value
    if _TEXT.fullmatch(re.sub(r"^\([A-Ea-e]\)\s*", "", s)) and any(
        len(w) > 2 and w not in FUNCTIONS for w in re.findall(r"[A-Za-z]+", s)
    ):
        words = re.sub(r"^\([A-Ea-e]\)\s*", "", s.lower()).replace(",", " ")
        return ("text", " ".join(words.split()))
    try:
        return _expression_node(s, to_sympy_syntax(s))
    except TooComplex:
        raise
    except LatexError:
        if _LATEX_MARKUP.search(s):
            return ("latex", s)
        return ("text", " ".join(s.lower().split()))


def _expression_node(s: str, syntax: str) -> Node:
    """("expr", syntax), or ("expr", syntax, (decimals, significant digits)) when it holds decimals that
    may be rounded (`x + 1.414i`): the fewest places and digits among them."""
    decimals = _EXPR_DECIMAL.findall(s)
    if not decimals:
        return ("expr", syntax)
    places = min(len(frac) for _, frac in decimals)
    return ("expr", syntax, (places, min(len((whole + frac).lstrip("0")) for whole, frac in decimals)))


def _number_node(s: str, value: Fraction) -> Node:
    """("num", value), or ("num", value, (decimals, significant digits)) for a decimal that may be rounded."""
    m = _DECIMAL_DIGITS.fullmatch(s)
    if not m:
        return ("num", value)
    digits = (m.group(1) + m.group(2)).lstrip("0")
    return ("num", value, (len(m.group(2)) - int(m.group(3) or 0), len(digits)))


def _base_number(s: str) -> Fraction | None:
    """`4210_7`, `1112122_{3}`: a numeral in base 2 to 10, compared by its digits as written (the base
    names the notation the question asked for, so `1011_2` = `1011` but not `11`)."""
    m = _BASE.fullmatch(s)
    if not m or not 2 <= (base := int(m.group(2))) <= 10 or any(int(d) >= base for d in m.group(1)):
        return None
    return Fraction(int(m.group(1)))


def _number_words(s: str) -> Fraction | None:
    """Number words as exact numbers: "six", "twenty-five", "one half", "two thirds"."""
    words = s.lower().replace("-", " ").split()
    if len(words) == 2 and words[0] in _TENS and 0 < _NUMBER_WORDS.get(words[1], 10) < 10:
        return Fraction(_TENS[words[0]] + _NUMBER_WORDS[words[1]])
    if len(words) == 1 and words[0] in _TENS:
        return Fraction(_TENS[words[0]])
    if len(words) == 1 and words[0] in _NUMBER_WORDS:
        return Fraction(_NUMBER_WORDS[words[0]])
    if (
        len(words) == 2
        and words[1] in _FRACTION_WORDS
        and (words[0] in _NUMBER_WORDS or words[0] in ("a", "an"))
    ):
        return Fraction(_NUMBER_WORDS.get(words[0], 1), _FRACTION_WORDS[words[1]])
    return None


def _interval(s: str) -> Node | None:
    if len(s) < 5 or s[0] not in "([" or s[-1] not in ")]":
        return None
    parts = split_top(s[1:-1])
    if len(parts) != 2 or not all(parts):
        return None
    return (parse(parts[0]), s[0] == "[", parse(parts[1]), s[-1] == "]")


def _abs_inequality(s: str, bars: re.Match[str]) -> Node | None:
    """`1 \\le |z| \\le 2`, `|x| < 3`: the intervals for |z|, mirrored about 0 (numeric bounds only)."""
    inner = _inequality(s.replace(bars.group(0), bars.group(1)))
    if inner is None or inner[0] != "intervals":
        return None
    zero: Node = ("num", Fraction(0))
    out = []
    for lo, lc, hi, hc in inner[1]:
        if {lo[0], hi[0]} - {"num", "inf"}:
            return None
        if lo[0] == "inf" or lo[1] < 0:
            lo, lc = zero, True
        neg_hi = ("inf", -1) if hi[0] == "inf" else ("num", -hi[1])
        if lo[1] == 0:
            out.append((neg_hi, hc, hi, hc))
        else:
            out += [(neg_hi, hc, ("num", -lo[1]), lc), (lo, lc, hi, hc)]
    return ("intervals", tuple(out))


def _inequality(s: str) -> Node | None:
    """`1 \\le x < 2`, `x > 3`, `x < -1 or x > 2` as a union of intervals; `|x| < 3` mirrored."""
    if bars := re.search(r"\|\s*([A-Za-z])\s*\|", s):
        return _abs_inequality(s, bars)
    pieces = _WORD_SPLIT.split(s) if _WORD_SPLIT.search(s) else [s]
    intervals = []
    for piece in pieces:
        tokens = [t.strip() for t in re.split(f"({_INEQUALITY.pattern})", piece)]
        if (
            len(tokens) == 3
            and _VARIABLE.fullmatch(tokens[0].lstrip("-").strip())
            and tokens[0].startswith("-")
        ):
            tokens = [tokens[0][1:].strip(), _FLIP.get(tokens[1], tokens[1]), f"-({tokens[2]})"]
        variable = [i for i in range(0, len(tokens), 2) if _VARIABLE.fullmatch(tokens[i])]
        if (
            len(tokens) not in (3, 5)
            or variable != ([2] if len(tokens) == 5 else variable[:1])
            or not variable
        ):
            return None
        values, ops = tokens[0::2], tokens[1::2]
        if len(tokens) == 3 and _VARIABLE.fullmatch(values[1]):
            values, ops = values[::-1], [_FLIP.get(ops[0], ops[0])]
        if "\\ne" in ops:
            return None
        lower = any(o in ("<", "\\le", "<=") for o in ops)
        closed = [o in ("\\le", "\\ge", "<=", ">=") for o in ops]
        if len(tokens) == 5:
            lo, hi = (values[0], values[2]) if lower else (values[2], values[0])
            lc, hc = (closed[0], closed[1]) if lower else (closed[1], closed[0])
            intervals.append((parse(lo), lc, parse(hi), hc))
        elif lower:
            intervals.append((("inf", -1), False, parse(values[1]), closed[0]))
        else:
            intervals.append((parse(values[1]), closed[0], ("inf", 1), False))
    return ("intervals", tuple(intervals))


def _brackets(s: str) -> Node | None:
    """Sets, matrices, tuples, intervals and unions written with brackets."""
    if m := _CASES.fullmatch(s):
        return ("set", tuple(parse(r) for r in re.split(r"\\\\", m.group(1)) if r.strip()))
    if (m := _MATRIX.fullmatch(s)) and "\\begin" not in m.group(2):
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip() and not r.strip().startswith("\\hline")]
        matrix = tuple(tuple(parse(c) for c in r.split("&")) for r in rows)
        if len({len(r) for r in matrix}) != 1:
            return None
        forms: list[Node] = [("matrix", matrix)]
        if len(matrix[0]) == 1 or len(matrix) == 1:
            cells = tuple(c for row in matrix for c in row)
            forms += [("tuple", cells), ("list", cells)]
        return _alt(forms)
    if s.startswith("\\lbrace") and s.endswith("\\rbrace"):
        inner = s[len("\\lbrace") : -len("\\rbrace")].strip()
        return ("set", tuple(parse(p) for p in split_top(inner))) if inner else ("set", ())
    if s.startswith("{") and not s.startswith("{{") and s.endswith("}") and _balanced_outer(s):
        inner = s[1:-1].strip()
        return ("set", tuple(parse(p) for p in split_top(inner))) if inner else ("set", ())
    if "\\cup" in s:
        parts = [_interval(p.strip()) for p in s.split("\\cup")]
        return ("intervals", tuple(parts)) if all(parts) else None
    if s.startswith("\\langle") and s.endswith("\\rangle"):
        return ("tuple", tuple(parse(p) for p in split_top(s[len("\\langle") : -len("\\rangle")])))
    if s and s[0] in "([" and s[-1] in ")]" and _balanced_outer(s):
        semicolons = ";" in s and "," not in s
        if len(split_top(s[1:-1])) == 1 and s[0] + s[-1] in ("()", "[]") and not semicolons:
            return parse(s[1:-1])
        readings: list[Node] = []
        interval = _interval(s)
        if interval:
            readings.append(("intervals", (interval,)))
        if s[0] + s[-1] in ("()", "[]"):
            sep = ";" if semicolons else ","
            kind = "tuple" if s[0] == "(" else "list"
            readings.append((kind, tuple(parse(p) for p in split_top(s[1:-1], sep))))
        return _alt(readings) if readings else None
    return None


def _balanced_outer(s: str) -> bool:
    """True when the first and last bracket enclose the whole text (not `(1)+(2)`)."""
    depth = 0
    for i, ch in enumerate(s):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and i < len(s) - 1:
            return False
    return True


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse one (cleaned or raw) answer into a node tree (cached: a reference repeats for every sample).

    >>> parse("50\\\\%")
    ('alt', (('num', Fraction(50, 1)), ('num', Fraction(1, 2))))
    >>> parse("x = 3")
    ('alt', (('eq', ('expr', 'x'), ('num', Fraction(3, 1))), ('num', Fraction(3, 1))))
    >>> parse("[1, 2)")
    ('intervals', ((('num', Fraction(1, 1)), True, ('num', Fraction(2, 1)), False),))
    """
    s = clean(text)
    if len(s) > MAX_LENGTH:
        raise TooComplex(f"answer longer than {MAX_LENGTH} characters")
    s = re.sub(r"^[A-Za-z]\s*\\in\s*", "", s)
    if "\\approx" in s:
        before, after = (p.strip() for p in s.split("\\approx", 1))
        s = after if not before or LHS.fullmatch(before) else before
    if s.count("\\pm") == 1:
        return ("set", (parse(s.replace("\\pm", "+")), parse(s.replace("\\pm", "-"))))
    if len(parts := split_top(s, ";")) > 1 and all(parts):
        return ("set", tuple(parse(p) for p in parts))
    if (node := _brackets(s)) is not None:
        return node
    if _INEQUALITY.search(s) and (node := _inequality(s)) is not None:
        return node
    if _WORD_SPLIT.search(s) and "=" not in s.replace("==", ""):
        return ("set", tuple(parse(q) for p in _WORD_SPLIT.split(s) for q in split_top(p) if q))
    pieces = _WORD_SPLIT.split(s)
    if len(pieces) > 1 and all("=" in p for p in pieces):
        return ("set", tuple(parse(p) for p in pieces))
    parts = split_top(s)
    if len(parts) > 1 and all(parts):
        elements = tuple(parse(p) for p in parts)
        readings: list[Node] = [("set", elements), ("tuple", elements)]
        grouped = scalar(s) if re.match(r"[-+]?\d+,\d", s) else None
        return _alt(([grouped] if grouped is not None and grouped[0] in ("num", "alt") else []) + readings)
    if _WORD_SPLIT.search(s):
        return ("set", tuple(parse(p) for p in _WORD_SPLIT.split(s)))
    if "=" in s and not _INEQUALITY.search(s) and len(sides := split_top(s, "=")) > 1:
        return _equation(s, sides)
    return scalar(s)


def _equation(s: str, sides: list[str]) -> Node:
    """`lhs = ... = rhs` as an equation of its outer sides; also as `rhs` alone when the left side only
    names the value (`x = 3`, `(p, q) = (3, 2)`), when a side is a constant (`a + b = 7`, `3 + 4 = 7`)
    or in a chain (`x = 5 + 5 + 1 = 11`)."""
    lhs, rhs = sides[0], sides[-1]
    if not lhs or not rhs:
        return scalar(s.strip("= "))
    right = parse(rhs)
    equation = ("eq", scalar(lhs), right)
    constant = [not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", side)) for side in (lhs, rhs)]
    named = len(sides) > 2 or LHS.fullmatch(lhs) or _is_label(lhs) or any(constant)
    return _alt([equation, right]) if named else equation


def _is_label(lhs: str) -> bool:
    """A name for the value rather than an expression: `(p,q)`, `F_n`, `|AB|`, `A:B`, `\\frac{NO}{BO}`."""
    bare = re.sub(r"_\{?\w+\}?|\\frac|\\[A-Za-z]+", "", lhs)
    return bool(re.search(r"[A-Za-z]", bare)) and not re.search(r"[-+*/^]|\d|[a-z]{2,}", bare)
