"""`graders` stands alone: importing every one of its modules pulls in neither torch, transformers nor rft.

Imports go one way (`graders` <- `tasks` <- `rft`), so a grader process stays light and `graders` can be
used without the training stack. The check runs in a fresh interpreter, since this test process has
imported all three already. It also checks that no name a package exposes hides one of its submodules
(`graders.math.parse` is a function, so the parser module is `graders.math.parsing`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "transformers", "rft")
CODE = """
import importlib, json, pkgutil, sys
import graders

def fail(name):
    raise ImportError(f"cannot import package {name}")

names = [m.name for m in pkgutil.walk_packages(graders.__path__, "graders.", onerror=fail)]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:])

def is_hidden(name):
    package, _, leaf = name.rpartition(".")
    return getattr(sys.modules[package], leaf) is not sys.modules[name]

hidden = [name for name in names if is_hidden(name)]
print(json.dumps({"file": graders.__file__, "modules": names, "forbidden": bad, "hidden": hidden}))
"""


def test_graders_modules_import_no_torch_transformers_or_rft() -> None:
    run = subprocess.run(
        [sys.executable, "-c", CODE, *FORBIDDEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert Path(report["file"]).resolve() == ROOT / "graders" / "__init__.py"
    # The walk reaches into every subpackage, down to the modules only subprocesses run.
    assert {"graders.judge.backends", "graders.math.sympy_worker", "graders.sandbox.zygote"} <= set(
        report["modules"]
    )
    assert report["forbidden"] == []
    assert report["hidden"] == []
