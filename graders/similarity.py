"""OpenAI's `text_similarity` grader: a similarity metric in [0, 1] between `input` and `reference`.

Metrics come from maintained libraries (rapidfuzz, sacrebleu, nltk, rouge-score), imported lazily so
`import graders` stays light. `meteor` needs WordNet 3.0 on disk (`graders.wordnet`: NLTK's copy or
Debian's `wordnet-base`); `cosine` needs an embeddings endpoint (`graders.embeddings`) or an embedding
function. When they cannot work, the grader refuses at construction, naming what is missing.

>>> from graders.base import Sample
>>> g = TextSimilarityGrader("sim", reference="{{item.ref}}", evaluation_metric="rouge_1", pass_threshold=0.5)
>>> round(g.grade(Sample("the cat sat"), {"ref": "the cat sat on the mat"}).score, 3)
0.667
"""

from __future__ import annotations

import functools
import importlib
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graders.base import Grade, GraderInputError, Sample
from graders.templates import DEFAULT_INPUT, DEFAULT_REFERENCE, check_template, prepare, render_field
from graders.wordnet import load_wordnet

Embed = Callable[[list[str]], Sequence[Sequence[float]]]
_WORDS = re.compile(r"\w+|[^\w\s]")


def _tokens(text: str) -> list[str]:
    return _WORDS.findall(text)


def fuzzy_match(hyp: str, ref: str) -> float:
    """rapidfuzz `fuzz.WRatio` after `utils.default_process` (lower-case, no punctuation), in [0, 1].

    OpenAI documents `fuzzy_match` only as "fuzzy string match ... using rapidfuzz". The scorer is inferred,
    not confirmed: WRatio with `default_process` is the one OpenAI's own graders guide uses for fuzzy
    matching in its python-grader example, and WRatio is rapidfuzz's default scorer (`process.extractOne`).

    >>> round(fuzzy_match("fuzzy wuzzy was a bear", "Fuzzy Wuzzy was a bear!"), 3)
    1.0
    """
    from rapidfuzz import fuzz, utils

    return fuzz.WRatio(hyp, ref, processor=utils.default_process) / 100.0


def bleu(hyp: str, ref: str) -> float:
    """Sentence BLEU (sacrebleu, exponential smoothing, effective order) scaled to [0, 1]."""
    import sacrebleu

    return sacrebleu.sentence_bleu(hyp, [ref]).score / 100.0


def gleu(hyp: str, ref: str) -> float:
    """Google-BLEU (nltk `sentence_gleu`) over word/punctuation tokens."""
    from nltk.translate.gleu_score import sentence_gleu

    return float(sentence_gleu([_tokens(ref)], _tokens(hyp)))


class _UnicodeWords:
    """rouge-score's default tokenizer keeps only [a-z0-9], scoring any non-Latin text 0; keep all words."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"[^\W_]+", text.casefold())


@functools.cache
def _rouge_scorer(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], tokenizer=_UnicodeWords())


def rouge(kind: str) -> Callable[[str, str], float]:
    """ROUGE-N / ROUGE-L F-measure over case-folded Unicode words."""

    def metric(hyp: str, ref: str) -> float:
        return float(_rouge_scorer(kind).score(ref, hyp)[kind].fmeasure)

    return metric


_METEOR_LOCK = threading.Lock()


def meteor(hyp: str, ref: str) -> float:
    """METEOR (nltk `meteor_score`: exact, then Porter-stem, then WordNet-synonym matches; NLTK's defaults).

    OpenAI does not say how it tokenises; NLTK >= 3.6.6 takes token lists, so both texts are split into the
    same words and punctuation marks as `gleu` (close to `nltk.word_tokenize`, which needs the Punkt model,
    another NLTK download). Case is folded by NLTK. The lock is there because NLTK's reader seeks and reads
    shared data files, which threads grading at once would interleave.
    """
    from nltk.translate.meteor_score import meteor_score

    wordnet = load_wordnet()
    with _METEOR_LOCK:
        return float(meteor_score([_tokens(ref)], _tokens(hyp), wordnet=wordnet))


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": rouge("rougeL"),
}
KNOWN_METRICS = [*METRICS, "cosine"]


def load_embed(path: str) -> Embed:
    """Import an embedding function given as `package.module:attr`."""
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise GraderInputError(f"cannot import embedding function {path!r}: {exc}") from exc


def cosine(embed: Embed, hyp: str, ref: str) -> float:
    """Cosine similarity of the two embeddings, clipped to [0, 1] (negative = unrelated)."""
    a, b = embed([hyp, ref])
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return max(0.0, dot / norm) if norm else 0.0


@dataclass
class TextSimilarityGrader:
    """Score = the chosen metric in [0, 1]; `pass_threshold` decides pass/fail for accuracy.

    `embed` (a function from texts to vectors, or its `pkg.mod:attr` path) is needed only for `cosine`.
    """

    name: str = "text_similarity"
    input: str = DEFAULT_INPUT
    reference: str = DEFAULT_REFERENCE
    evaluation_metric: str = "fuzzy_match"
    pass_threshold: float = 1.0
    embed: Embed | str | None = None

    def __post_init__(self) -> None:
        check_template(self.input, f"{self.name}.input")
        check_template(self.reference, f"{self.name}.reference")
        metric = self.evaluation_metric
        if metric not in KNOWN_METRICS:
            raise GraderInputError(f"{self.name}.evaluation_metric: {metric!r} is not one of {KNOWN_METRICS}")
        if not 0.0 <= float(self.pass_threshold) <= 1.0:
            raise GraderInputError(f"{self.name}.pass_threshold must be in [0, 1], got {self.pass_threshold}")
        if metric == "meteor":
            load_wordnet()
        if metric == "cosine" and self.embed is None:
            from graders.embeddings import OPENAI_EMBEDDING_MODEL, HTTPEmbedder, configured

            if not configured():
                raise GraderInputError(
                    f"{self.name}: evaluation_metric 'cosine' needs an embeddings endpoint for "
                    f"{OPENAI_EMBEDDING_MODEL!r}: set OPENAI_BASE_URL (an OpenAI-compatible server with "
                    "/v1/embeddings) or map the name in $RFT_MODEL_MAP, or pass embed=<function texts -> "
                    "vectors> (spec field 'embed': 'pkg.mod:attr')"
                )
            self.embed = HTTPEmbedder.for_model()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TextSimilarityGrader:
        return cls(
            spec.get("name", "text_similarity"),
            spec["input"],
            spec["reference"],
            spec["evaluation_metric"],
            spec.get("pass_threshold", 1.0),
            spec.get("embed"),
        )

    def _score(self, hyp: str, ref: str) -> float:
        if self.evaluation_metric == "cosine":
            embed = load_embed(self.embed) if isinstance(self.embed, str) else self.embed
            return cosine(embed, hyp, ref)
        return METRICS[self.evaluation_metric](hyp, ref)

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        sample, item = prepare(sample, item)
        hyp = render_field(self.input, sample, item, f"{self.name}.input")
        ref = render_field(self.reference, sample, item, f"{self.name}.reference")
        score = min(1.0, max(0.0, self._score(hyp, ref)))
        return Grade(score, {"metric": self.evaluation_metric, "passed": score >= self.pass_threshold})
