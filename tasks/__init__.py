"""Tasks: datasets with train and held-out splits, prompt builders and graders."""

from tasks.base import REGISTRY, Task, load_task

__all__ = ["REGISTRY", "Task", "load_task"]
