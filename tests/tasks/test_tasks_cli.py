"""`rft tasks` and `rft tasks show`, run through the real CLI."""

from typer.testing import CliRunner

from rft.cli import app

runner = CliRunner()


def test_tasks_lists_every_builtin_with_sizes() -> None:
    result = runner.invoke(app, ["tasks"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert {"arithmetic (default)", "word_problems", "countdown", "json_extract", "humaneval"} <= set(rows)
    cells = [c.strip() for c in rows["humaneval"].split("│")]
    assert cells[2:4] == ["100", "64"]
    assert [c.strip() for c in rows["arithmetic (default)"].split("│")][2:4] == ["2000", "200"]


def test_show_renders_prompts_and_references_with_options() -> None:
    result = runner.invoke(
        app, ["tasks", "show", "arithmetic", "--n", "2", "-o", "digits=3", "-o", "n_train=10"]
    )
    assert result.exit_code == 0, result.output
    assert "train 10, held-out 200" in result.output
    assert result.output.count("[reference]") == 2 and "test #1" in result.output


def test_show_train_split_and_response_format() -> None:
    result = runner.invoke(app, ["tasks", "show", "json_extract", "--n", "1", "--split", "train"])
    assert result.exit_code == 0, result.output
    assert "train #0" in result.output and "response_format:" in result.output


def test_show_rejects_bad_input() -> None:
    unknown = runner.invoke(app, ["tasks", "show", "no_such_task"])
    assert unknown.exit_code != 0 and "unknown task" in unknown.output
    assert runner.invoke(app, ["tasks", "show", "arithmetic", "--split", "dev"]).exit_code != 0
    assert runner.invoke(app, ["tasks", "show", "arithmetic", "-o", "digits"]).exit_code != 0
