"""Grader SDK: objective scorers used as rewards and for evaluation. Never imports torch."""

from graders.base import Grade, Grader, GraderInputError, Sample, agrade, pass_threshold

__all__ = ["Grade", "Grader", "GraderInputError", "Sample", "agrade", "pass_threshold"]
