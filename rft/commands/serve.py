"""`rft serve`: an OpenAI-compatible chat-completions endpoint for a model, optionally with a LoRA adapter."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        model: str = typer.Option(
            "default", "--model", help="packaged name ('default'), local path or hub id"
        ),
        adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter directory to apply"),
        host: str = typer.Option("127.0.0.1", "--host", help="interface to bind (0.0.0.0 exposes it)"),
        port: int = typer.Option(8000, "--port", help="TCP port; 0 picks a free one (printed at start)"),
        name: str | None = typer.Option(None, "--name", help="model id clients send (default: --model)"),
        dtype: str = typer.Option(
            "float32", "--dtype", help="torch dtype of the weights (float32, bfloat16, ...)"
        ),
        device: str = typer.Option(
            "auto", "--device", help="auto (cuda when available, else cpu), cpu, cuda:1, ..."
        ),
        verbose: bool = typer.Option(False, "--verbose", help="log every request"),
        state_dir: Path = typer.Option(
            Path("runs/serve"), "--state-dir", help="fine-tuning files, jobs (SQLite) and runs; kept across restarts"
        ),
        max_jobs: int = typer.Option(1, "--max-jobs", min=1, help="fine-tuning jobs trained at the same time"),
    ) -> None:
        """Serve OpenAI's chat completions, models, files and fine-tuning jobs APIs (a judge, an eval, RFT jobs)."""
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise typer.BadParameter(f"{adapter} holds no adapter_config.json", param_hint="--adapter")
        from rft.serve import serve  # heavy imports stay out of `rft --help`

        adapter_dir = str(adapter) if adapter else None
        serve(
            model,
            adapter=adapter_dir,
            host=host,
            port=port,
            name=name,
            dtype=dtype,
            device=device,
            verbose=verbose,
            state_dir=str(state_dir),
            max_jobs=max_jobs,
        )
