"""Generation backends behind one `Sampler` interface."""

from rft.sampling.base import Completion, Sampler, SamplingParams

# Backend name -> "module:class"; each class takes (model, tokenizer).
BACKENDS: dict[str, str] = {"hf": "rft.sampling.hf:HFSampler"}

__all__ = ["BACKENDS", "Completion", "Sampler", "SamplingParams"]
