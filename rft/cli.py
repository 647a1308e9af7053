"""The `rft` command line. Every module in `rft/commands/` adds its subcommands via `register(app)`."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import rft.commands

app = typer.Typer(help="Verifiable-reward reinforcement fine-tuning: train, eval, grade.", no_args_is_help=True)

for _info in sorted(pkgutil.iter_modules(rft.commands.__path__), key=lambda m: m.name):
    importlib.import_module(f"rft.commands.{_info.name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
