"""CLI subcommands: each module here defines `register(app: typer.Typer)`; `rft.cli` finds them all."""
