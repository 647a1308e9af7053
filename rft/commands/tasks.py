"""`rft tasks`: list the built-in tasks with their split sizes; `rft tasks show NAME` renders a few items."""

from __future__ import annotations

import json
from typing import Any

import typer


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; values are parsed as JSON when they can be (`digits=3`, `ops="+-*"`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--option")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def list_tasks() -> None:
    """Print a table of every registered task with its split sizes and grader."""
    from rich.console import Console
    from rich.table import Table

    from tasks.base import DEFAULT_TASK, REGISTRY, load_task

    table = Table(title="Built-in tasks (rft tasks show NAME for examples)")
    for column in ("name", "train", "held-out", "grader", "description"):
        table.add_column(column, justify="right" if column in ("train", "held-out") else "left")
    for name in sorted(REGISTRY):
        label = f"{name} (default)" if name == DEFAULT_TASK else name
        try:
            task = load_task(name)
        except (ImportError, ValueError) as exc:  # e.g. an optional grader not installed: show why
            table.add_row(label, "-", "-", "-", f"unavailable: {exc}")
            continue
        table.add_row(label, str(len(task.train)), str(len(task.test)), task.grader.name, task.description)
    Console().print(table)


def show_task(spec: str, n: int, split: str, options: dict[str, Any]) -> None:
    """Print `n` items of one split: the rendered chat messages and the reference answer."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    from tasks.base import load_task

    try:
        task = load_task(spec, **options)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from exc
    console = Console()
    console.print(Text(task.name + (f": {task.description}" if task.description else ""), style="bold"))
    console.print(Text(f"train {len(task.train)}, held-out {len(task.test)}, grader {task.grader.name}"))
    if task.response_format:
        console.print(f"response_format: {json.dumps(task.response_format)}", markup=False)
    for issue in task.issues:
        console.print(f"issue: {issue}", markup=False, style="yellow")
    items = task.train if split == "train" else task.test
    for i, item in enumerate(items[:n]):
        body = "\n".join(f"[{m['role']}] {m['content']}" for m in task.messages(item))
        reference = task.reference(item) if task.reference else "(no reference)"
        console.print(Panel(Text(f"{body}\n\n[reference] {reference}"), title=f"{split} #{i}"))


def register(app: typer.Typer) -> None:
    tasks_app = typer.Typer(
        help="List built-in tasks, or show rendered prompts of one.", invoke_without_command=True
    )

    @tasks_app.callback()
    def tasks_main(ctx: typer.Context) -> None:
        """List the built-in tasks with train / held-out sizes."""
        if ctx.invoked_subcommand is None:
            list_tasks()

    @tasks_app.command("show")
    def show(
        name: str = typer.Argument(
            ..., help="built-in name, pkg.module:attr, file.py:attr or a task directory"
        ),
        n: int = typer.Option(3, "--n", help="how many items to print"),
        split: str = typer.Option("test", "--split", help="train or test"),
        option: list[str] = typer.Option([], "--option", "-o", help="task option key=value, repeatable"),
    ) -> None:
        """Print a few rendered prompts with their references."""
        if split not in ("train", "test"):
            raise typer.BadParameter(f"split must be train or test, got {split!r}", param_hint="--split")
        show_task(name, n, split, parse_options(option))

    app.add_typer(tasks_app, name="tasks")
