"""`json_extract`: pull a person, a company, a date and an amount out of a short text into JSON.

Texts are generated from a few sentence shapes with varied date and money formats, so the model has
to normalise (`3 March 2024` -> `2024-03-03`, `$1,234.50` -> `1234.5`). The task carries a
`response_format` JSON Schema for structured output, and the json_schema grader gives field-wise
partial credit against `item["expected"]`.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

from graders.json_schema import JsonSchemaGrader
from tasks.base import Item, Task, generate_splits

FIRST = [
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Emeka",
    "Fatima",
    "Gustav",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lucia",
]
LAST = ["Smith", "Okafor", "Nakamura", "Silva", "Novak", "Haddad", "Larsen", "Patel", "Moreau", "Kim"]
COMPANIES = [
    "Acme Corp",
    "Blue Harbor Ltd",
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella Books",
    "Vega Travel",
]
SERVICES = ["consulting", "a software licence", "office chairs", "a training course", "catering", "repairs"]
SENTENCES = [
    "On {date}, {name} paid {amount} to {company} for {service}.",
    "Invoice from {company} to {name}, dated {date}: {amount} for {service}.",
    "{name} booked {service} with {company} on {date} and paid a deposit of {amount}.",
    "Receipt: {company} received {amount} from {name} on {date} ({service}).",
]
# Month names spelled out here, not via strftime, so the texts do not depend on the locale.
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DATE_FORMATS = ["{m} {d.day}, {d.year}", "{d.day} {m} {d.year}", "{d:%Y-%m-%d}", "{m:.3} {d.day}, {d.year}"]
AMOUNT_FORMATS = ["${a:,.2f}", "{a:,.2f} USD", "USD {a:,.2f}", "${a:,.0f}"]
RESPONSE_FORMAT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "the person's full name"},
        "company": {"type": "string"},
        "date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "YYYY-MM-DD"},
        "amount": {"type": "number"},
    },
    "required": ["name", "company", "date", "amount"],
    "additionalProperties": False,
}
# Grading is per field (a quarter each) against a lenient schema, so one wrong field costs a quarter
# rather than failing the strict `response_format` check as a whole.
FIELDS = {
    "name": "normalized",
    "company": "normalized",
    "date": "exact",
    "amount": {"mode": "numeric", "tolerance": 0.005},
}
INSTRUCTION = (
    "Extract the person's full name, the company, the date (as YYYY-MM-DD) and the amount (a plain number) "
    "from the text. Reply with only a JSON object with the keys name, company, date and amount."
)


def make_item(rng: random.Random) -> Item:
    """One generated text and the JSON object that should be extracted from it."""
    date = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(365 * 6))
    amount_format = rng.choice(AMOUNT_FORMATS)
    amount = float(rng.randrange(5, 5000)) if "0f" in amount_format else rng.randrange(500, 500000) / 100
    expected = {
        "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "company": rng.choice(COMPANIES),
        "date": date.isoformat(),
        "amount": amount,
    }
    text = rng.choice(SENTENCES).format(
        name=expected["name"],
        company=expected["company"],
        service=rng.choice(SERVICES),
        date=rng.choice(DATE_FORMATS).format(d=date, m=MONTHS[date.month - 1]),
        amount=amount_format.format(a=amount),
    )
    return {"text": text, "expected": expected}


def json_extract(
    n_train: int = 2000, n_test: int = 200, seed: int = 0, instruction: str = INSTRUCTION
) -> Task:
    """Field extraction graded field by field (each of the four fields is worth a quarter)."""
    train, test = generate_splits(make_item, n_train, n_test, seed, key="text")

    def prompt(item: Any) -> str:
        return f"{instruction}\n\nText: {item['text']}"

    return Task(
        name="json_extract",
        train=train,
        test=test,
        prompt=prompt,
        grader=JsonSchemaGrader(
            name="json_extract", schema={"type": "object"}, reference="{{item.expected}}", fields=FIELDS
        ),
        reference=lambda item: json.dumps(item["expected"]),
        response_format=RESPONSE_FORMAT,
        description="extract name, company, date and amount from a short text into JSON",
    )
