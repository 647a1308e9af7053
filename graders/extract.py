"""Pull the answer out of a free-form model response.

Models wrap their final answer in many ways (`\\boxed{}`, GSM8K's `####`, "The answer is ...",
a fenced code block, a JSON object in prose). Every grader that compares answers needs the same
extraction, so it lives here once. All functions are pure, linear-time scans that return `None`
when nothing matching is found, never raise on odd text.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BOX_COMMANDS = re.compile(r"\\(?:boxed|fbox)\b\s*")
_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is\s*:?|:|=)[ \t]*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<!\.)\.(?!\.)(?=\s|$)|\n")
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.^{/\\])(?:(?<![A-Za-z0-9_)\]}])(?P<sign>[-+\u2212]\s?))?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:(?P<exp>[eE][-+\u2212]?\d+)|/(?P<den>\d+(?:\.\d+)?))?"
    r"(?![A-Za-z0-9_^}])"
)
_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n(?P<body>.*?)(?:^[ \t]*```|\Z)", re.MULTILINE | re.DOTALL
)
_JSON = json.JSONDecoder()
_CHOICE_PHRASE = re.compile(
    r"(?i:answer|option|choice|réponse|respuesta|antwort|答案)\s*(?i:is|:|=|est|es|ist|是|为|：)?\s*"
    r"(?i:(?:for\s+sure|\w+ly|indeed|then|therefore)\s+)?"
    r"(?i:option|choice)?\s*:?\s*(?:[*_(\[{$]|\\\()*\s*(?:\\(?:text\w*|math\w+)\{\s*\(?)?"
    r"(?P<letter>[A-Z](?![A-Za-z])|[a-z](?=[*_]*\)|[*_]*\.?\s*$))",
    re.MULTILINE,
)
_CHOICE_START = re.compile(r"^\W{0,3}(?P<letter>[A-Z])(?:[.:)\]\u3002\u3001\uff1a]|\s*$|(?=[^\x00-\x7f]))")
_CHOICE_END = re.compile(r"(?<![A-Za-z])(?P<before>[\w']*)\s+[*_(\[]*(?P<letter>[A-Za-z])[*_)\]]*\W{0,2}$")
_CHOICE_VERBS = {"is", "it's", "be", "choose", "pick", "select", "option", "answer", "with"}
_CHOICE_VERDICT = re.compile(
    r"(?<![A-Za-z])\(?(?P<letter>[A-Z])\)?\s+(?i:is\s+(?:the\s+)?(?:correct|right|best|true)\b|is\s+the\s+answer)"
)
_HEDGE = r"[A-E]\)?\s+(?:and|or|&)\s+\(?[A-E]\b"
_CHOICE_HEDGE = re.compile(rf"\b{_HEDGE}")
_CHOICE_HEDGE_START = re.compile(rf"[\s(\[]*{_HEDGE}")
_CHOICE_ALONE = re.compile(
    r"^\W*(?:\\(?:text\w*|math\w+)\{\W*)?(?P<letter>[A-Z])(?:[).:}\]\s\\]*|[).:}\]]*[\s\\]+.*)$", re.DOTALL
)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The contents of the `{...}` opening at `start` (nested, `\\{` escapes skipped) and its end."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def boxed_spans(text: str) -> list[tuple[str, int, int]]:
    """Every `\\boxed{...}` / `\\fbox{...}` (or bare `\\boxed 5`) as (contents, start, end), left to right.

    An unclosed box ends the scan: everything after it is inside it.

    >>> boxed_spans(r"so \\boxed{1} and \\boxed{-1}")
    [('1', 3, 12), ('-1', 17, 27)]
    """
    found: list[tuple[str, int, int]] = []
    pos = 0
    while (m := _BOX_COMMANDS.search(text, pos)) is not None:
        pos = m.end()
        if pos < len(text) and text[pos] == "{":
            inner = _braced(text, pos)
            if inner is None:
                break
            found.append((inner[0].strip(), m.start(), inner[1]))
            pos = inner[1]
        elif bare := re.match(r"[^\s$]+", text[pos:]):
            found.append((bare.group(0), m.start(), pos + bare.end()))
    return found


def extract_boxed(text: str, last: bool = True) -> str | None:
    """Contents of `\\boxed{...}` / `\\fbox{...}` with nested braces; the last one unless `last=False`.

    >>> extract_boxed(r"so $\\boxed{\\frac{1}{2}}$, not \\boxed{3}")
    '3'
    >>> extract_boxed(r"so $\\boxed{\\frac{1}{2}}$, not \\boxed{3}", last=False)
    '\\\\frac{1}{2}'
    >>> extract_boxed("no box here") is None
    True
    """
    found = boxed_spans(text)
    if not found:
        return None
    return found[-1][0] if last else found[0][0]


def extract_hash_answer(text: str) -> str | None:
    """The text after the last `####` (GSM8K style), stripped; `None` if absent or empty.

    >>> extract_hash_answer("3 + 4 = 7\\n#### 7")
    '7'
    >>> extract_hash_answer("no marker") is None
    True
    """
    if "####" not in text:
        return None
    tail = text.rsplit("####", 1)[1].strip()
    return tail.splitlines()[0].strip() if tail else None


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):
        pass
    return last


def extract_answer_phrase(text: str) -> str | None:
    """The answer after the last "The answer is", "Answer:" or "final answer is", up to the sentence end.

    >>> extract_answer_phrase("First 2+2=4. So the final answer is 4.")
    '4'
    >>> extract_answer_phrase("Answer: (B)")
    '(B)'
    >>> extract_answer_phrase("nothing to see") is None
    True
    """
    last = _last_match(_ANSWER_PHRASE, text)
    if last is None:
        return None
    rest = text[last.end() :]
    end = _SENTENCE_END.search(rest)
    answer = rest[: end.start() if end else len(rest)].strip()
    return answer or None


def _clean_number(m: re.Match[str]) -> str:
    sign = (m.group("sign") or "").replace("\u2212", "-").replace(" ", "").replace("+", "")
    literal = sign + m.group("num").replace(",", "")
    if m.group("exp"):
        literal += m.group("exp").replace("\u2212", "-")
    if m.group("den"):
        literal += "/" + m.group("den")
    return literal


def extract_last_number(text: str) -> str | None:
    """The last number in the text, normalised to a plain literal (`-1234.5`, `3/4`, `1.2e-6`).

    Signs (also the Unicode minus), thousands separators, decimals, scientific notation and
    simple fractions are recognised; separators are dropped and the minus made ASCII. A number glued
    to non-Latin text counts (`858颗`); a piece of an expression (`\\frac{1}{3}`, `x^{2}`) does not.

    >>> extract_last_number("costs $1,234.50 then \\u22123/4 of it")
    '-3/4'
    >>> extract_last_number("rate 1.2e-6 per s")
    '1.2e-6'
    >>> extract_last_number("no digits") is None
    True
    """
    last = _last_match(_NUMBER, text)
    return _clean_number(last) if last is not None else None


def extract_code_block(text: str, language: str | None = None) -> str | None:
    """Contents of the first fenced ``` block, or the first whose language tag matches; `None` if no fence.

    An unclosed final fence (a truncated response) yields everything after it.

    >>> extract_code_block("Here:\\n```python\\nprint(1)\\n```\\n")
    'print(1)\\n'
    >>> extract_code_block("```js\\nx\\n```\\n```py\\ny\\n```", language="py")
    'y\\n'
    >>> extract_code_block("plain text") is None
    True
    """
    for m in _FENCE.finditer(text):
        if language is None or m.group("lang").lower() == language.lower():
            return m.group("body")
    return None


def _end_of_bracket_run(text: str, start: int) -> int:
    """Skip a run of opening brackets: a start inside it would nest just as deeply (keeps the scan linear)."""
    end = start
    while end < len(text) and text[end] in "[{ \t\n":
        end += 1
    return end


def _json_values(text: str, first_only: bool) -> list[Any]:
    """Top-level JSON objects/arrays in `text`, left to right, found by `raw_decode` at each bracket."""
    values: list[Any] = []
    pos = 0
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return values
        start = min(starts)
        try:
            value, end = _JSON.raw_decode(text, start)
        except ValueError:
            pos = start + 1
            continue
        except RecursionError:
            pos = _end_of_bracket_run(text, start)
            continue
        values.append(value)
        if first_only:
            return values
        pos = end


def extract_json(text: str) -> Any | None:
    """The first JSON object or array in the text (```json fences and prose around it are fine).

    >>> extract_json('Sure! ```json\\n{"a": [1, 2]}\\n``` done')
    {'a': [1, 2]}
    >>> extract_json("no json") is None
    True
    """
    values = _json_values(text, first_only=True)
    return values[0] if values else None


def extract_last_json(text: str) -> Any | None:
    """The last top-level JSON object or array in the text.

    >>> extract_last_json('draft {"a": 1} final {"a": 2}')
    {'a': 2}
    """
    values = _json_values(text, first_only=False)
    return values[-1] if values else None


def extract_choice(text: str, letters: str = "ABCDE") -> str | None:
    """The multiple-choice letter a response settles on, `None` when it hedges between two.

    In order: boxed, "answer/option is X" (also "the answer is for sure X", "réponse est X"), a bare
    last line, "X is correct", a leading letter ("D. because ..."), a final letter ("... I think it's B").

    >>> extract_choice(r"... so the result is 5, which is $\\boxed{\\textbf{(B)}}$")
    'B'
    >>> extract_choice("Comparing them, the correct option is c.")
    'C'
    >>> extract_choice("It could be (A) or (B), I am unsure") is None
    True
    >>> extract_choice("Let's check each one. It's not A, therefore I think it's B")
    'B'
    """
    candidates: list[str] = []
    if (boxed := extract_boxed(text)) is not None:
        candidates.append(boxed)
    phrases = list(_CHOICE_PHRASE.finditer(text))
    if phrases and _CHOICE_HEDGE.search(re.split(r"[,.;\n]", text[phrases[-1].start() :])[0]):
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    candidates += [m.group("letter").upper() for m in phrases[-1:]] + lines[-1:]
    for candidate in candidates:
        if _CHOICE_HEDGE_START.match(candidate.strip()):
            return None
        m = _CHOICE_ALONE.match(candidate.strip().replace("$", ""))
        if m and len(candidate.strip()) <= 40 and m.group("letter").upper() in letters:
            return m.group("letter").upper()
    verdicts = list(_CHOICE_VERDICT.finditer(text))
    if verdicts and verdicts[-1].group("letter") in letters:
        return verdicts[-1].group("letter")
    for pattern in (_CHOICE_START, _CHOICE_END):
        found = pattern.search(text.strip())
        if found is None or found.group("letter").upper() not in letters:
            continue
        if pattern is _CHOICE_START:
            return found.group("letter")
        before = found.group("before").lower()
        if before not in ("and", "or", "either") and (
            found.group("letter").isupper() or before in _CHOICE_VERBS
        ):
            return found.group("letter").upper()
    return None


def extract_final_answer(text: str) -> str | None:
    """What the model answered: last `\\boxed{}`, else `####`, else an answer phrase, else the last number.

    >>> extract_final_answer(r"maybe \\boxed{2}... no: \\boxed{3}")
    '3'
    >>> extract_final_answer("so it is 12\\n#### 12")
    '12'
    >>> extract_final_answer("The answer is x = 5.")
    'x = 5'
    >>> extract_final_answer("we get 7 apples")
    '7'
    """
    for extractor in (extract_boxed, extract_hash_answer, extract_answer_phrase, extract_last_number):
        answer = extractor(text)
        if answer:
            return answer
    return None
