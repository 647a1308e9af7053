# rft tasks show examples/custom_task.py:task --split train
"""A custom task in a few lines: name capital cities, graded by normalised exact match."""

from graders.string import ExactMatchGrader
from tasks import Task
from tasks.base import split_items

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
            "Egypt": "Cairo", "Norway": "Oslo", "Chile": "Santiago", "India": "New Delhi", "Spain": "Madrid"}
train, test = split_items([{"country": c, "answer": a} for c, a in CAPITALS.items()], n_test=3, seed=0)

task = Task(
    name="capitals",
    train=train,
    test=test,
    prompt=lambda item: f"What is the capital of {item['country']}? Reply with the city name only.",
    grader=ExactMatchGrader(),  # compares the reply with {{item.answer}}, ignoring case and punctuation
    reference=lambda item: item["answer"],
)
