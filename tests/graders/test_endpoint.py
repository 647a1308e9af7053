"""The endpoint grader against a real HTTP server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jsonschema import Draft202012Validator

from graders.base import GraderInputError
from graders.endpoint import EndpointGrader
from graders.runner import grade_batch
from graders.spec import load_grader

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "reward_endpoint.schema.json").read_text())


def validator(part: str) -> Draft202012Validator:
    return Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{part}"})


class RewardServer(BaseHTTPRequestHandler):
    """Scores by the path: /ok rewards the length of the answer, /flaky fails twice per answer, and so on."""

    seen: ClassVar[list[dict[str, Any]]] = []
    failures: ClassVar[dict[str, int]] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RewardServer.seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        text = body["sample"]["output_text"]
        if self.path == "/flaky" and RewardServer.failures.get(text, 0) < 2:
            RewardServer.failures[text] = RewardServer.failures.get(text, 0) + 1
            return self._send(500, {"error": "overloaded"})
        if self.path == "/slow":
            time.sleep(2.0)
        replies: dict[str, tuple[int, Any]] = {
            "/busy": (429, {"error": "rate limited"}),
            "/missing": (404, {"error": "no such route"}),
            "/bad-request": (400, {"error": "item lacks 'answer'"}),
            "/out-of-range": (200, {"score": 1.5}),
            "/not-json": (200, "<html>oops</html>"),
        }
        status, reply = replies.get(self.path, (200, {
            "score": 1.0 if text == body["item"]["answer"] else 0.25,
            "sub_scores": {"exact": float(text == body["item"]["answer"]), "short": 1.0 if len(text) < 5 else 0.0},
            "details": {"seen": text},
        }))
        self._send(status, reply)

    def _send(self, status: int, reply: Any) -> None:
        data = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RewardServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_scores_sub_scores_and_details_come_back(url: str) -> None:
    grader = load_grader({"type": "endpoint", "name": "rm", "url": f"{url}/ok", "headers": {"Authorization": "Bearer t"}})
    grade = grader.grade("Paris", {"answer": "Paris", "id": 7})
    assert grade.score == 1.0 and grade.error is None
    assert {k: g.score for k, g in grade.sub_grades.items()} == {"exact": 1.0, "short": 0.0}
    assert (grade.details["seen"], grade.details["attempts"]) == ("Paris", 1)
    sent = RewardServer.seen[-1]
    assert sent["auth"] == "Bearer t" and sent["body"]["item"] == {"answer": "Paris", "id": 7}
    assert list(validator("request").iter_errors(sent["body"])) == []


def test_server_errors_are_retried_with_backoff_until_success(url: str) -> None:
    grader = EndpointGrader(url=f"{url}/flaky", retry_backoff=0.2, max_retries=3)
    start = time.perf_counter()
    grade = grader.grade("Rome", {"answer": "Rome"})
    elapsed = time.perf_counter() - start
    assert (grade.score, grade.error, grade.details["attempts"], grader.retries) == (1.0, None, 3, 2)
    assert elapsed >= 0.2 * 0.5 + 0.4 * 0.5  # two back-offs of 0.2 and 0.4 s, jittered by 0.5-1.5x


def test_retries_are_bounded_and_end_in_a_counted_error(url: str) -> None:
    grader = EndpointGrader(url=f"{url}/busy", retry_backoff=0.01, max_retries=2)
    grade = grader.grade("x", {"answer": "x"})
    assert grade.score == 0.0 and grader.retries == 2
    assert grade.error.startswith("endpoint failed after 3 attempts: HTTP 429")


def test_a_slow_server_times_out_into_a_counted_error(url: str) -> None:
    grader = EndpointGrader(url=f"{url}/slow", timeout=0.3, max_retries=1, retry_backoff=0.01)
    start = time.perf_counter()
    grade = grader.grade("x", {"answer": "x"})
    assert time.perf_counter() - start < 1.5  # two attempts of 0.3 s, not the server's 2 s
    assert grade.error == "endpoint failed after 2 attempts: timed out after 0.3 s"


@pytest.mark.parametrize(("path", "error"), [
    ("/out-of-range", "endpoint reply: score must be in [0, 1], got 1.5"),
    ("/not-json", "endpoint reply: body is not JSON: '<html>oops</html>'"),
    ("/bad-request", "endpoint reply: HTTP 400: {\"error\": \"item lacks 'answer'\"}"),
])
def test_malformed_replies_are_counted_errors_without_retry(url: str, path: str, error: str) -> None:
    grader = EndpointGrader(url=f"{url}{path}", retry_backoff=0.01)
    grade = grader.grade("x", {"answer": "x"})
    assert (grade.score, grade.error, grader.retries) == (0.0, error, 0)


def test_a_refused_url_is_a_misconfiguration(url: str) -> None:
    with pytest.raises(GraderInputError, match="url: .*/missing answered HTTP 404"):
        EndpointGrader(url=f"{url}/missing").grade("x", {"answer": "x"})


def test_the_runner_grades_a_batch_in_order_and_counts_errors(url: str) -> None:
    grader = EndpointGrader(url=f"{url}/ok", name="rm")
    good = grade_batch(grader, ["a", "b", "c", "d"], [{"answer": a} for a in "abzz"], time_limit=10)
    assert good.mode == "async" and good.scores == [1.0, 1.0, 0.25, 0.25]
    assert good.sub_means() == {"exact": 0.5, "short": 1.0}
    bad = grade_batch(EndpointGrader(url=f"{url}/slow", timeout=5, max_retries=0), ["a"], [{"answer": "a"}],
                      time_limit=0.5)
    assert (bad.errors, bad.timeouts) == (1, 1)


def test_schema_documents_what_the_server_sends_back() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    response = validator("response")
    assert list(response.iter_errors({"score": 0.5, "sub_scores": {"a": 1}, "details": {}})) == []
    assert list(response.iter_errors({"score": 1.5}))
    assert list(response.iter_errors({"sub_scores": {}}))


@pytest.mark.parametrize(("spec", "message"), [
    ({"type": "endpoint"}, "'url' is a required property"),
    ({"type": "endpoint", "url": "ftp://x"}, "does not match"),
    ({"type": "endpoint", "url": "http://x", "timeout": 0}, "timeout: 0 is less than or equal to the minimum"),
    ({"type": "endpoint", "url": "http://x", "retries": 2}, "Additional properties are not allowed"),
])
def test_bad_specs_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        load_grader(spec)
