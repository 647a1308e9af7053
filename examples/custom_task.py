# rft tasks show examples/custom_task.py:task --split train
"""A custom task in a few lines: name capital cities, graded by normalised exact match."""

from graders.string import ExactMatchGrader
from tasks import Task
from tasks.base import split_items

PAIRS = "France Paris, Japan Tokyo, Kenya Nairobi, Peru Lima, Egypt Cairo, Norway Oslo, Chile Santiago"
items = [dict(zip(["country", "answer"], pair.split())) for pair in PAIRS.split(", ")]
train, test = split_items(items, n_test=2, seed=0)

task = Task(
    name="capitals",
    train=train,
    test=test,
    prompt=lambda item: f"What is the capital of {item['country']}? Reply with the city name only.",
    grader=ExactMatchGrader(),  # compares the reply with {{item.answer}}, ignoring case and punctuation
    reference=lambda item: item["answer"],
)
