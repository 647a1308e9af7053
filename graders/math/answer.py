"""Find the final answer in a math response (or a wrapped reference) before it is parsed.

Order, first hit wins: a response that is only an answer is taken whole; else the last `\\boxed{}`
(boxes side by side, `\\boxed{1}, \\boxed{-1}`, form one answer set) unless a "final answer" phrase
after it states one; else GSM8K's `####`; else an answer phrase ("the answer is", "Final Answer: The
largest n is 34."); else what follows "is"/"are" in the last sentence ("the roots are x = 1 or x = -1");
else whichever comes last of the last inline math span and the last stand-alone number. A number is stand-alone only when it is not part of an expression (not a denominator, an
exponent or a subscript), so `\\frac{1}{\\sqrt{3}}` is never read as `3`.

>>> final_answer(r"\\frac{1}{\\sqrt{3}}")
'\\\\frac{1}{\\\\sqrt{3}}'
>>> final_answer(r"The roots are \\boxed{1} and \\boxed{-1}.")
'1, -1'
>>> final_answer(r"So \\boxed{27}. Final Answer: The largest n is 34.")
'34'
>>> final_answer("共有3 + 10 = 13只鸟和鹳鸟。")
'13'
"""

from __future__ import annotations

import re

from graders.extract import boxed_spans, extract_hash_answer

_DELIMITER = re.compile(r"(?<!\\)\$\$|(?<!\\)\$|\\\(|\\\)|\\\[|\\\]")
_CLOSER = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.^{/\\])(?:[-+\u2212]\s?)?"
    r"(?:\d{1,3}(?:(?:,|\{,\}|\s|\\,|\u2009|\u202f)\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+"
    r"|\\[dt]?frac\{[^{}]+\}\{[^{}]+\}|\\sqrt\{[^{}]+\})"
    r"(?:\s*/\s*\d+)?(?![0-9_^}]|\.\d|[A-Za-z]\w*\s*[=(^])"
)
_FINAL_PHRASE = re.compile(
    r"(?:final\s+answer|answer\s+is|answer\s*:|the\s+answer\s+should\s+be|réponse\s*(?:est|:)|答案\s*(?:是|为|：|:))"
    r"\s*(?:is\s*)?:?\s*",
    re.IGNORECASE,
)
_IS_ARE = re.compile(r"\b(?:is|are)\s+", re.IGNORECASE)
_IS = re.compile(r"\b(?:is|are|equals|=|est|是|为)\s+", re.IGNORECASE)
_CONNECTOR = re.compile(r"(?:[\s$,;+&.]|\band\b|\bor\b|\\[()\[\]]|\\text\{\s*(?:and|or)\s*\}|\\q?quad\b)*")
_REVISION = re.compile(
    r"[.!?:;]\s|\n|\b(?:no|not|wait|actually|but|instead|correct(?:ion|ed)?)\b", re.IGNORECASE
)
_WORD = re.compile(r"(?<!\\)\b[A-Za-z][a-z]{2,}\b")
_NOT_PROSE = (
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty half halves "
    "third thirds quarter quarters fourth fourths and or sqrt frac dfrac tfrac cdot times div pmatrix "
    "bmatrix matrix begin end text textbf mathrm left right infty sin cos tan cot sec csc log exp mod pmod "
    "approx cup cap emptyset"
)
_LATEX_WORDS = frozenset(_NOT_PROSE.split())
_ANSWER_PHRASES = {
    "all real numbers",
    "real numbers",
    "no solution",
    "no real solutions",
    "empty set",
    "none",
}


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, contents) of each `$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]` span, in one linear scan.

    An inline `$` span does not cross a line break; escaped `\\$` is a dollar sign, not a delimiter.

    >>> [c for _, _, c in math_spans(r"so $x = 1$ and \\[ y \\] but 5\\$ now")]
    ['x = 1', ' y ']
    """
    spans = []
    opener: re.Match[str] | None = None
    for m in _DELIMITER.finditer(text):
        if opener is None:
            opener = m if m.group(0) in _CLOSER else None
        elif m.group(0) == _CLOSER[opener.group(0)]:
            contents = text[opener.end() : m.start()]
            if opener.group(0) == "$" and "\n" in contents:
                opener = m
                continue
            spans.append((opener.start(), m.end(), contents))
            opener = None
    return spans


def _blank(text: str, spans: list[tuple[int, int, str]]) -> str:
    """The text with every math span replaced by spaces of the same length."""
    out, pos = [], 0
    for start, end, _ in spans:
        out += [text[pos:start], " " * (end - start)]
        pos = end
    return "".join(out) + text[pos:]


def _undouble(text: str) -> str:
    """`\\\\frac` (a JSON- or prompt-escaped backslash) back to `\\frac`: doubled when commands are."""
    if re.search(r"(?<!\\)\\\\(?:[a-z]{3,}|[{}])", text) and not re.search(r"(?<!\\)\\[a-z]{3,}", text):
        return text.replace("\\\\", "\\")
    return re.sub(r"(?<!\\)\\\\(?=[A-Za-z]{2,})", r"\\", text)


def is_prose(text: str) -> bool:
    """True for sentences; False for an answer alone (`(x-1)(x+1)`, `10 weeks`, `x = 1 or x = -1`)."""
    if text.strip().lower().rstrip(".") in _ANSWER_PHRASES:
        return False
    if "\n" in text.strip() or re.search(r"[\u3000-\u9fff\u0600-\u06ff\u0900-\u097f]", text):
        return True
    spans = math_spans(text)
    outside = _blank(text, spans)
    if spans:
        plain = [w for w in re.findall(r"\b[A-Za-z]{2,}\b", outside) if w.lower() not in _LATEX_WORDS]
        if len(plain) >= 2 or any(w.lower() not in _LATEX_WORDS for w in _WORD.findall(outside)):
            return True
    bare = re.sub(r"_\{[^{}]*\}|_\w|\\(?:begin|end)\{\w+\}|\\text\w*\s*\{[^{}]*\}|\\[A-Za-z]+", " ", text)
    words = [w for w in _WORD.findall(bare) if w.lower() not in _LATEX_WORDS]
    first_digit = re.search(r"\d", bare)
    if words and first_digit and re.search(r"\b[A-Za-z][a-z]{2,}[\s:,]", bare[: first_digit.start()]):
        return True
    return len(words) >= 2 or (len(words) == 1 and len(bare) > 60)


def _boxed_answer(text: str, boxes: list[tuple[str, int, int]]) -> str:
    """The last box, joined by the boxes right before it that only connectors separate from it."""
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box[2] : group[0][1]]
        listed = len(gap) <= 40 and re.search(r"\band\b", gap) and not _REVISION.search(gap)
        if not ((len(gap) <= 200 and _CONNECTOR.fullmatch(gap)) or listed):
            break
        group.insert(0, box)
    values = [(final_answer(b[0]) or b[0]) if "\\boxed" in b[0] else b[0] for b in group]  # a box in a box
    return ", ".join(dict.fromkeys(values))


def _after_phrase(text: str) -> str | None:
    """The answer after the last answer phrase, to the end of its sentence or line."""
    last = None
    for last in _FINAL_PHRASE.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end() :].lstrip()
    end = re.search(r"(?<!\.)\.(?=\s|$)|\n|。|(?<=\$)\s*\.(?=\s|$)|\s(?:I hope|which|since|because)\b", rest)
    sentence = rest[: end.start() if end else len(rest)].strip().rstrip(".,;")
    sentence = re.sub(r'^(?:\\?["\'`])+|(?:\\?["\'`])+$', "", sentence).strip()
    if not sentence:
        return None
    if boxes := boxed_spans(sentence):
        return _boxed_answer(sentence, boxes)
    if is_prose(sentence):
        tail = list(_IS.finditer(sentence))
        if tail and not is_prose(candidate := sentence[tail[-1].end() :].strip()):
            return candidate
        return _first_math_or_number(sentence)
    return sentence


def _first_math_or_number(text: str) -> str | None:
    """The first inline math span or stand-alone number: what follows "Answer:" comes first."""
    spans = math_spans(text)
    number = _NUMBER.search(_blank(text, spans))
    found = [(start, contents.strip()) for start, _, contents in spans[:1] if contents.strip()]
    found += [(number.start(), number.group(0).strip())] if number else []
    return min(found)[1] if found else None


def _last_math_or_number(text: str) -> str | None:
    """Whichever ends later: the last inline math span, or the last stand-alone number outside spans."""
    spans = math_spans(text)
    last: list[tuple[int, str]] = []
    for _, end, contents in reversed(spans):
        answer = _last_math_or_number(contents) if is_prose(contents) else contents.strip()
        if answer:
            last = [(end, answer)]
            break
    numbers = [(m.end(), m.group(0).strip()) for m in _NUMBER.finditer(_blank(text, spans))]
    best = max(last + numbers[-1:], default=None)
    return best[1] if best else None


def final_answer(text: str) -> str | None:
    """The answer a response (or a reference) states; `None` when there is none."""
    text = _undouble(text.strip())
    if not text:
        return None
    boxes = boxed_spans(text)
    if (unclosed := _unclosed_box(text, boxes)) is not None:
        return unclosed
    if not boxes and "####" not in text and not is_prose(text) and not _FINAL_PHRASE.search(text):
        return text
    phrases = list(_FINAL_PHRASE.finditer(text))
    if boxes:
        later = phrases and phrases[-1].start() > boxes[-1][2]
        return (_after_phrase(text) if later else None) or _boxed_answer(text, boxes)
    if (hashed := extract_hash_answer(text)) is not None:
        return hashed
    if (phrased := _after_phrase(text)) is not None:
        return phrased
    return _stated(text) or _last_math_or_number(text)


def _unclosed_box(text: str, boxes: list[tuple[str, int, int]]) -> str | None:
    """What follows a last `\\boxed{` that is never closed (a cut-off response), if it comes after every box."""
    start = text.rfind("\\boxed{")
    if start < 0 or (boxes and boxes[-1][1] >= start) or any(b[1] <= start < b[2] for b in boxes):
        return None
    return text[start + len("\\boxed{") :].strip().rstrip("$.").strip() or None


def _stated(text: str) -> str | None:
    """What follows an "is"/"are" of the last sentence, when that is an answer, not more prose."""
    sentences = [s for s in re.split(r"(?<!\.)\.(?=\s|$)|\n|。", text) if s.strip()]
    if not sentences:
        return None
    candidates = [
        sentences[-1][m.end() :].strip().rstrip(".,;!") for m in list(_IS_ARE.finditer(sentences[-1]))[-3:]
    ]
    for candidate in reversed(candidates):
        if re.search(r"[\d\\=]", candidate) and not is_prose(candidate):
            return candidate
    # A word answer ("The function is even.") only where the text states no number at all.
    words = [c for c in candidates if re.fullmatch(r"[A-Za-z][A-Za-z -]{0,30}", c)]
    return words[-1] if words and not re.search(r"\d", text) else None
