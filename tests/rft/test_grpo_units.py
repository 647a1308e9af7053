"""Small pure pieces of the GRPO recipe: the learning-rate schedule and the per-step data order."""

from __future__ import annotations

import pytest

from rft.policy import lr_factor
from rft.recipes.grpo import step_items


@pytest.mark.parametrize(
    ("schedule", "update", "expected"),
    [
        ("constant", 0, 1 / 3),  # warm-up: (u + 1) / (warmup + 1) with warmup 2
        ("constant", 1, 2 / 3),
        ("constant", 20, 1.0),
        ("linear", 2, 1.0),  # first update after warm-up: progress 0
        ("linear", 11, 1 - 0.9 * 9 / 17),  # progress (11 - 2) / (20 - 2 - 1) = 9/17
        ("linear", 19, 0.1),  # last of 20 updates: progress 1
        ("cosine", 19, 0.1),
        ("cosine", 2, 1.0),
    ],
)
def test_lr_factor_by_hand(schedule: str, update: int, expected: float) -> None:
    assert lr_factor(update, warmup=2, total=20, schedule=schedule) == pytest.approx(expected)


def test_step_items_cover_each_epoch_once_and_repeat_exactly() -> None:
    items = [{"i": i} for i in range(10)]
    epoch = [x["i"] for s in range(5) for x in step_items(items, s, 2, seed=3)]
    assert sorted(epoch) == list(range(10))  # steps 0-4 with 2 prompts each = one pass over the data
    assert epoch == [x["i"] for s in range(5) for x in step_items(items, s, 2, seed=3)]
    assert epoch != [x["i"] for s in range(5) for x in step_items(items, s, 2, seed=4)]
    next_epoch = [x["i"] for s in range(5, 10) for x in step_items(items, s, 2, seed=3)]
    assert sorted(next_epoch) == list(range(10)) and next_epoch != epoch
