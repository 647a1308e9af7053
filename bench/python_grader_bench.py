"""Milliseconds per grade of OpenAI-style python graders that import the documented packages.

    python bench/python_grader_bench.py [--runs 20]

Each grade is one sandboxed session: fork from the warm fork server, mount the read-only package view,
import what the grader imports, call `grade()`. Nothing is pre-imported in the fork server, so a grader
importing numpy pays numpy's import on every grade; this prints that price next to a standard-library
grader. Wall time is the median of `--runs` serial grades; CPU is the sandboxed process's own (user + sys).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graders.python_grader import PythonGrader  # noqa: E402
from graders.sandbox import Limits, Sandbox  # noqa: E402

GRADERS = {
    "standard library": "import json\ndef grade(sample, item):\n    return float(json.loads('1'))",
    "rapidfuzz (OpenAI guide)": (
        "from rapidfuzz import fuzz, utils\ndef grade(sample, item):\n"
        "    return fuzz.WRatio(sample['output_text'], item['ref'], processor=utils.default_process) / 100.0"
    ),
    "numpy": "import numpy as np\ndef grade(sample, item):\n    return float(np.mean([1.0, 0.0]))",
    "pandas": "import pandas as pd\ndef grade(sample, item):\n    return float(pd.Series([1.0, 0.0]).mean())",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    limits = Limits(wall_s=30.0)
    sandbox = Sandbox(limits, packages=True)
    print(f"isolation={sandbox.info.mode} cpus={os.cpu_count()} load={os.getloadavg()}")
    for name, source in GRADERS.items():
        grader = PythonGrader(source, limits=limits)
        grade = grader.grade("fuzzy wuzzy was a bear", {"ref": "fuzzy wuzzy had no hair"})
        assert grade.error is None, grade.error
        walls = []
        for _ in range(args.runs):
            start = time.perf_counter()
            grader.grade("fuzzy wuzzy was a bear", {"ref": "fuzzy wuzzy had no hair"})
            walls.append(time.perf_counter() - start)
        script = source + "\ngrade({'output_text': 'a'}, {'ref': 'b'})"
        cpus = [sandbox.run(script).cpu_s for _ in range(args.runs)]
        print(
            f"{name:>26}: {statistics.median(walls) * 1000:7.1f} ms wall per grade, "
            f"{statistics.mean(cpus) * 1000:7.1f} ms CPU per run"
        )


if __name__ == "__main__":
    main()
