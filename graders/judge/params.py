"""The sampling settings a judge grader sends: OpenAI's `sampling_params`, checked by name.

OpenAI grader specs spell the token limit `max_completions_tokens`; the chat API says `max_completion_tokens`
(and, before reasoning models, `max_tokens`): all three are accepted. `reasoning_effort` is passed through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from graders.base import GraderInputError

# OpenAI grader specs say `max_completions_tokens`; the chat API says `max_completion_tokens` / `max_tokens`.
_MAX_TOKENS_ALIASES = ("max_tokens", "max_completions_tokens", "max_completion_tokens")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


@dataclass(frozen=True)
class JudgeParams:
    """Sampling settings sent to the judge; `None` leaves the backend's default.

    `reasoning_effort` (OpenAI's reasoning models) is passed through as is; a spec that sets it and no
    temperature sends no temperature, since reasoning models reject one.
    """

    temperature: float | None = 0.0
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    reasoning_effort: str | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, where: str = "sampling_params") -> JudgeParams:
        """Parse an OpenAI-style `sampling_params` object, rejecting unknown keys by name."""
        spec = dict(spec or {})
        aliases = [k for k in _MAX_TOKENS_ALIASES if k in spec]
        if len(aliases) > 1:
            raise GraderInputError(f"{where}: give only one of {aliases}")
        max_tokens = spec.pop(aliases[0]) if aliases else None
        known = {"temperature", "top_p", "seed", "reasoning_effort"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise GraderInputError(
                f"{where}: unknown keys {unknown}; known: {[*sorted(known), *_MAX_TOKENS_ALIASES]}"
            )
        effort = spec.get("reasoning_effort")
        temperature = spec.get("temperature", None if effort is not None else 0.0)
        params = cls(temperature, spec.get("top_p"), max_tokens, spec.get("seed"), effort)
        params.validate(where)
        return params

    def validate(self, where: str) -> None:
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise GraderInputError(f"{where}.temperature must be in [0, 2], got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GraderInputError(f"{where}.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise GraderInputError(f"{where}.max_tokens must be a positive integer, got {self.max_tokens!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise GraderInputError(f"{where}.seed must be an integer, got {self.seed!r}")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise GraderInputError(
                f"{where}.reasoning_effort must be one of {list(REASONING_EFFORTS)}, got {self.reasoning_effort!r}"
            )

    def to_request(self) -> dict[str, Any]:
        """The chat-completions request fields for these settings (unset ones left out).

        The token limit is sent as `max_completion_tokens`, the name OpenAI's reasoning models require
        (vLLM and `rft serve` accept it too).
        """
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        if "max_tokens" in fields:
            fields["max_completion_tokens"] = fields.pop("max_tokens")
        return fields
