"""text_similarity metrics against values worked out by hand, pass_threshold, and offline-only metrics."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from graders.base import GraderInputError, Sample, pass_threshold
from graders.runner import grade_batch
from graders.similarity import TextSimilarityGrader
from graders.spec import load_grader
from graders.wordnet import INSTALL_HINT, database_dir, nltk_has_wordnet

REF = "the cat sat on the mat"


@pytest.mark.parametrize(
    ("metric", "output", "reference", "expected"),
    [
        # Indel similarity: "abcd" -> "abce" needs 1 deletion + 1 insertion over 8 chars: 1 - 2/8.
        ("fuzzy_match", "abcd", "abce", 0.75),
        ("fuzzy_match", "abc", "xyz", 0.0),
        # OpenAI-style fuzzy_match = WRatio after default_process: case and punctuation are ignored ...
        ("fuzzy_match", "Paris!", "paris", 1.0),
        # ... and a short answer inside a 3.7x longer text scores partial_ratio (100) scaled by WRatio's 0.9
        ("fuzzy_match", "cat", "the cat sat", 0.9),
        ("bleu", REF, REF, 1.0),
        ("bleu", "dogs run fast", REF, 0.0),
        # GLEU = min(precision, recall) over 1..4-grams: hyp has 3 n-grams, ref 6, all 3 match -> 0.5.
        ("gleu", "the cat", "the cat sat", 0.5),
        ("gleu", "dogs run", REF, 0.0),
        # ROUGE-1: 3 of 3 hyp unigrams match, 3 of 6 ref unigrams covered: F = 2PR/(P+R) = 2/3.
        ("rouge_1", "the cat sat", REF, 2 / 3),
        # ROUGE-2: hyp bigrams {the cat, cat sat} both in ref (5 bigrams): P=1, R=0.4, F=4/7.
        ("rouge_2", "the cat sat", REF, 4 / 7),
        # ROUGE-3: one trigram, found among 4: P=1, R=0.25, F=0.4.
        ("rouge_3", "the cat sat", REF, 0.4),
        ("rouge_4", "the cat sat", REF, 0.0),  # no 4-gram in a 3-word answer
        ("rouge_5", REF, REF, 1.0),
        # ROUGE-L: LCS("the mat sat", ref) = "the sat" or "the mat" = 2: P=2/3, R=1/3, F=4/9.
        ("rouge_l", "the mat sat", REF, 4 / 9),
        ("rouge_l", "mat the on sat cat the", REF, None),
        ("rouge_1", "Привет, мир", "привет мир", 1.0),  # non-Latin words count (the library default drops them)
        ("rouge_2", "東京 大阪 京都", "東京 大阪", 0.5 * 2 / 1.5),  # P=1/2, R=1/1 -> F=2/3  # reordering lowers L below 1 (checked below)
    ],
)
def test_metric_values(metric: str, output: str, reference: str, expected: float | None) -> None:
    grader = TextSimilarityGrader("sim", "{{sample.output_text}}", "{{item.ref}}", metric)
    grade = grader.grade(Sample(output), {"ref": reference})
    assert 0.0 <= grade.score <= 1.0
    if expected is None:
        assert grade.score < 0.7
    else:
        assert grade.score == pytest.approx(expected, abs=1e-9)
    assert grade.details["metric"] == metric


def test_pass_threshold_drives_pass_flag_and_accuracy_threshold() -> None:
    grader = TextSimilarityGrader(reference="{{item.ref}}", evaluation_metric="rouge_1", pass_threshold=0.6)
    assert pass_threshold(grader) == 0.6
    assert grader.grade("the cat sat", {"ref": REF}).details["passed"] is True  # 0.667
    assert grader.grade("the dog", {"ref": REF}).details["passed"] is False  # 1/1 P, 1/6 R -> 0.286


def letter_counts(texts: list[str]) -> list[list[float]]:
    """A real (if crude) embedding: counts of a-z, enough to check the cosine arithmetic."""
    return [[float(t.count(chr(c))) for c in range(ord("a"), ord("z") + 1)] for t in texts]


def test_cosine_with_an_embedding_function_and_by_dotted_path() -> None:
    # "ab" -> (1,1,0..), "a" -> (1,0,..): cos = 1/sqrt(2).
    for embed in (letter_counts, f"{__name__}:letter_counts"):
        grader = TextSimilarityGrader(reference="{{item.ref}}", evaluation_metric="cosine", embed=embed)
        assert grader.grade("ab", {"ref": "a"}).score == pytest.approx(1 / math.sqrt(2))
        assert grader.grade("zz", {"ref": "a"}).score == 0.0


def test_cosine_without_embeddings_is_refused_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "RFT_MODEL_MAP"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(GraderInputError, match="'cosine' needs an embeddings endpoint for 'text-embedding-3-large'"):
        TextSimilarityGrader(evaluation_metric="cosine")


class EmbeddingsHandler(BaseHTTPRequestHandler):
    """`POST /v1/embeddings` answering with `letter_counts`, OpenAI's response shape; records each request."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, self.headers.get("Authorization"), body))
        if body["model"] != "letters":
            self.reply(404, {"error": {"message": f"no model {body['model']}"}})
            return
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(letter_counts(body["input"]))]
        self.reply(200, {"object": "list", "data": data[::-1], "model": "letters"})  # out of order on purpose

    def reply(self, status: int, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def embeddings_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_cosine_over_an_embeddings_endpoint(embeddings_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unchanged OpenAI cosine spec: text-embedding-3-large is mapped to a loopback /v1/embeddings server."""
    base = f"http://127.0.0.1:{embeddings_server.server_address[1]}/v1"
    monkeypatch.setenv("RFT_MODEL_MAP", json.dumps({"text-embedding-3-large": {"base_url": base, "model": "letters"}}))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    grader = load_grader({"type": "text_similarity", "name": "cos", "input": "{{sample.output_text}}",
                          "reference": "{{item.ref}}", "evaluation_metric": "cosine"})
    assert grader.grade("ab", {"ref": "a"}).score == pytest.approx(1 / math.sqrt(2))
    result = grade_batch(grader, ["abc", "zz"], [{"ref": "cab"}, {"ref": "a"}], mode="process", workers=1)
    assert result.scores == [pytest.approx(1.0), 0.0] and result.errors == 0
    path, auth, body = embeddings_server.requests[0]
    assert (path, auth, body) == ("/v1/embeddings", "Bearer sk-local", {"model": "letters", "input": ["ab", "a"]})
    spec = {"type": "text_similarity", "name": "cos", "input": "{{sample.output_text}}", "reference": "{{item.ref}}",
            "evaluation_metric": "cosine"}
    monkeypatch.setenv("RFT_MODEL_MAP", json.dumps({"text-embedding-3-large": {"base_url": base, "model": "nope"}}))
    with pytest.raises(GraderInputError, match="refused model 'nope' with HTTP 404"):
        load_grader(spec).grade("ab", {"ref": "a"})
    monkeypatch.setenv("RFT_MODEL_MAP", json.dumps({"text-embedding-3-large": {"base_url": "http://127.0.0.1:9/v1"}}))
    down = grade_batch(load_grader(spec), ["ab"], [{"ref": "a"}], mode="thread")
    assert down.errors == 1 and "EmbeddingUnavailable" in down.grades[0].error


needs_wordnet = pytest.mark.skipif(
    not (nltk_has_wordnet() or database_dir()), reason=f"no WordNet on disk: {INSTALL_HINT}"
)
# NLTK's single_meteor_score / meteor_score doctest (nltk/nltk, nltk/translate/meteor_score.py, Apache-2.0):
# hypothesis1 against reference1 gives round(score, 4) == 0.6944.
NLTK_HYPOTHESIS1 = "It is a guide to action which ensures that the military always obeys the commands of the party"
NLTK_REFERENCE1 = "It is a guide to action that ensures that the military will forever heed Party commands"


@needs_wordnet
@pytest.mark.parametrize(
    ("output", "reference", "expected"),
    [
        # METEOR = Fmean * (1 - 0.5 * (chunks / matches)**3), Fmean = PR / (0.9 P + 0.1 R).
        # Identical: P = R = 1, one chunk of 6 matches: 1 - 0.5 / 216 (never exactly 1).
        (REF, REF, 1 - 0.5 * (1 / 6) ** 3),
        # "car" reaches "auto" through its WordNet synset: 4 matches in one chunk: 1 - 0.5 / 64.
        ("the car is red", "the auto is red", 1 - 0.5 * (1 / 4) ** 3),
        # "tree" matches nothing: P = R = 3/4, chunks "the" | "is red": 0.75 * (1 - 0.5 * (2/3)**3).
        ("the tree is red", "the auto is red", 0.75 * (1 - 0.5 * (2 / 3) ** 3)),
        # NLTK looks synonyms up after Porter stemming, so "large" (stem "larg") misses "big": 2 matches in
        # 2 chunks: P = R = 2/3, (2/3) * (1 - 0.5).
        ("a large house", "a big house", 1 / 3),
        ("", REF, 0.0),  # no hypothesis word: NLTK returns 0 rather than divide by zero
        # Case is folded; the extra "." costs precision only: P = 6/7, R = 1, Fmean = (6/7) / (0.9 * 6/7 + 0.1).
        ("The Cat sat on the mat.", REF, 6 / 6.1 * (1 - 0.5 * (1 / 6) ** 3)),
    ],
)
def test_meteor_values(output: str, reference: str, expected: float) -> None:
    grader = TextSimilarityGrader(reference="{{item.ref}}", evaluation_metric="meteor", pass_threshold=0.9)
    grade = grader.grade(output, {"ref": reference})
    assert grade.score == pytest.approx(expected, abs=1e-12)
    assert grade.details == {"metric": "meteor", "passed": expected >= 0.9}


@needs_wordnet
def test_meteor_matches_nltk_doctest_through_an_openai_spec() -> None:
    spec = {
        "type": "text_similarity",
        "name": "m",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": "meteor",
        "pass_threshold": 0.5,
    }
    grader = load_grader(spec)
    assert round(grader.grade(NLTK_HYPOTHESIS1, {"reference": NLTK_REFERENCE1}).score, 4) == 0.6944
    outputs = [NLTK_HYPOTHESIS1, "the car is red", "purple"]
    items = [{"reference": NLTK_REFERENCE1}, {"reference": "the auto is red"}, {"reference": "the auto is red"}]
    result = grade_batch(grader, outputs, items, mode="thread", workers=3)
    assert [round(s, 4) for s in result.scores] == [0.6944, 0.9922, 0.0] and result.errors == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"evaluation_metric": "rouge_6"}, "evaluation_metric: 'rouge_6' is not one of"),
        ({"pass_threshold": 1.5}, "pass_threshold must be in"),
        ({"reference": "{{answer}}"}, "must start with item. or sample."),
    ],
)
def test_bad_configuration(kwargs: dict, message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        TextSimilarityGrader(**kwargs)


def test_bad_inputs() -> None:
    grader = TextSimilarityGrader(reference="{{item.ref}}")
    with pytest.raises(GraderInputError, match="must be a string"):
        grader.grade(None, {"ref": "x"})
    with pytest.raises(GraderInputError, match="'item.ref' is missing"):
        grader.grade("x", {"reference": "x"})
