"""Python graders import the packages OpenAI documents for its python-grader image, read-only, and nothing
else of site-packages; a grader that fails reports its own exception and line as the grade's error."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
import tomllib

from graders.code import CodeGrader
from graders.python_grader import PythonGrader
from graders.sandbox import Limits, Sandbox, isolation_info, pids_of, uid_range
from graders.sandbox.packages import DOCUMENTED, package_view, resolve

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(wall_s=30.0)  # importing scipy or sklearn takes seconds on a loaded 2-core machine
NAMESPACES = isolation_info().mode == "namespaces"

# OpenAI graders guide (developers.openai.com/api/docs/guides/graders), "Python graders", the working
# example, verbatim; the page runs it on this item and sample but prints no score.
GUIDE_RAPIDFUZZ = """
from rapidfuzz import fuzz, utils

def grade(sample, item) -> float:
    output_text = sample["output_text"]
    reference_answer = item["reference_answer"]
    return fuzz.WRatio(output_text, reference_answer, processor=utils.default_process) / 100.0
"""


def test_openai_guide_rapidfuzz_grader() -> None:
    """The strings are 22 and 23 characters long (under 1.5x apart), so WRatio is the best of the Indel
    ratio and 0.95 x the token ratios. Their longest common subsequence 'fuzzy wuzzy a  ar' has 17
    characters: ratio 2 * 17 / (22 + 23) = 34/45 = 0.756, above 0.95 x token_set_ratio (0.718)."""
    spec = {"type": "python", "source": GUIDE_RAPIDFUZZ, "image_tag": "2025-05-08"}
    grade = PythonGrader.from_spec(spec).grade(
        "fuzzy wuzzy was a bear", {"reference_answer": "fuzzy wuzzy had no hair"}
    )
    assert grade.error is None, grade.error
    assert grade.score == pytest.approx(34 / 45)


PACKAGE_GRADERS = {
    # name: (source of grade(), sample text, item, expected score derived by hand)
    "numpy cosine of [1, 0] and [1, 1] = 1/sqrt(2)": (
        """
        import numpy as np
        def grade(sample, item):
            a, b = np.array(json.loads(sample["output_text"])), np.array(item["ref"])
            return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        """,
        "[1, 0]",
        {"ref": [1, 1]},
        1 / math.sqrt(2),
    ),
    "scipy spearman: one swap in 4 ranks = 1 - 6*2/(4*15)": (
        """
        from scipy import stats
        def grade(sample, item):
            return float(stats.spearmanr(json.loads(sample["output_text"]), item["ref"]).statistic)
        """,
        "[1, 3, 2, 4]",
        {"ref": [1, 2, 3, 4]},
        0.8,
    ),
    "pandas: 3 of 4 rows match": (
        """
        import pandas as pd
        def grade(sample, item):
            df = pd.DataFrame({"pred": json.loads(sample["output_text"]), "gold": item["ref"]})
            return float((df["pred"] == df["gold"]).mean())
        """,
        '["a", "b", "c", "x"]',
        {"ref": ["a", "b", "c", "d"]},
        0.75,
    ),
    "pydantic: valid record (age '36' coerces to int)": (
        """
        import pydantic
        class Person(pydantic.BaseModel):
            name: str
            age: int
        def grade(sample, item):
            try:
                Person.model_validate_json(sample["output_text"])
                return 1.0
            except pydantic.ValidationError:
                return 0.0
        """,
        '{"name": "Ada", "age": "36"}',
        {},
        1.0,
    ),
    "sympy: 2*x + x equals 3*x": (
        """
        import sympy
        def grade(sample, item):
            return float(sympy.simplify(sympy.sympify(sample["output_text"]) - sympy.sympify(item["ref"])) == 0)
        """,
        "2*x + x",
        {"ref": "3*x"},
        1.0,
    ),
    "scikit-learn f1: precision 1, recall 2/3 = 0.8": (
        """
        from sklearn.metrics import f1_score
        def grade(sample, item):
            return float(f1_score(item["ref"], json.loads(sample["output_text"])))
        """,
        "[1, 0, 0, 1]",
        {"ref": [1, 0, 1, 1]},
        0.8,
    ),
}


@pytest.mark.parametrize("name", PACKAGE_GRADERS)
def test_grader_using_a_documented_package(name: str) -> None:
    source, output, item, expected = PACKAGE_GRADERS[name]
    if "scikit-learn" in name:
        pytest.importorskip("sklearn")
    grade = PythonGrader("import json\n" + textwrap.dedent(source), limits=LIMITS).grade(output, item)
    assert grade.error is None, grade.error
    assert grade.score == pytest.approx(expected)
    assert pids_of(uid_range()) == []


PROBE = """
import errno, importlib.util, json, os, sys
import numpy
pkg = os.path.dirname(numpy.__file__)
site = os.path.dirname(pkg)
attempts = {
    "new file in site-packages": lambda: open(os.path.join(site, "rft-escape-probe.py"), "w"),
    "new file in numpy": lambda: open(os.path.join(pkg, "rft-escape-probe.py"), "w"),
    "overwrite numpy": lambda: open(os.path.join(pkg, "__init__.py"), "a"),
    "remove numpy": lambda: os.remove(os.path.join(pkg, "__init__.py")),
    "rename numpy": lambda: os.rename(pkg, pkg + "-gone"),
    "chmod numpy": lambda: os.chmod(pkg, 0o777),
}
errors = {}
for what, attempt in attempts.items():
    try:
        attempt()
        errors[what] = "succeeded"
    except OSError as exc:
        errors[what] = errno.errorcode[exc.errno]
mounts = [line.split() for line in open("/proc/self/mountinfo")]
modes = {m[4]: m[5].split(",")[0] for m in mounts if m[4] == site or m[4].startswith(site + os.sep)}
print(json.dumps({
    "site": site,
    "listing": sorted(os.listdir(site)),
    "errors": errors,
    "modes": modes,
    "found": {m: importlib.util.find_spec(m) is not None for m in ("torch", "rft", "graders", "transformers")},
    "uid": os.getuid(),
}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    result = Sandbox(LIMITS, packages=True).run(PROBE)
    assert result.ok, result.stderr
    return json.loads(result.stdout)


def test_package_directory_cannot_be_written(probe: dict) -> None:
    assert set(probe["errors"].values()) <= {"EROFS", "EACCES", "EPERM"}, probe["errors"]
    assert not (Path(probe["site"]) / "rft-escape-probe.py").exists()
    assert (Path(probe["site"]) / "numpy" / "__init__.py").stat().st_size > 0
    if NAMESPACES:  # read-only mounts, not only file modes: even a uid that owned the files could not write
        assert probe["modes"] and set(probe["modes"].values()) == {"ro"}, probe["modes"]


def test_only_the_documented_packages_and_their_dependencies_are_visible(probe: dict) -> None:
    assert probe["found"] == {"torch": False, "rft": False, "graders": False, "transformers": False}
    if NAMESPACES:
        assert probe["listing"] == sorted(package_view().sites[probe["site"]])
        assert "torch" not in probe["listing"] and "numpy" in probe["listing"]
    if isolation_info().drops_uid:
        assert probe["uid"] >= uid_range(1).start


def test_code_submissions_see_the_standard_library_only() -> None:
    result = CodeGrader(limits=LIMITS).sandbox.run("import numpy")
    assert result.status == "error" and "No module named 'numpy'" in result.stderr


def test_resolution_follows_dependencies_and_nothing_else() -> None:
    view = resolve(["pandas"])
    entries = {e for entries in view.sites.values() for e in entries}
    assert {"pandas", "numpy", "dateutil"} <= entries  # numpy and python-dateutil are pandas' requirements
    assert not any(e.split("-")[0] in ("torch", "transformers", "rft", "sympy") for e in entries)
    assert view.installed.keys() == {"pandas"} and view.missing == ()
    assert resolve(["no-such-distribution"]).missing == ("no-such-distribution",)
    yaml = resolve(["PyYAML"])  # names compare as PEP 503 names; PyYAML installs `yaml` and `_yaml`
    assert yaml.installed.keys() == {"pyyaml"} and "yaml" in next(iter(yaml.sites.values()))


ERRORS = [
    # (source, the grade's error must contain)
    (
        "import json\nimport foo\ndef grade(s, i):\n    return 1.0",
        "No module named 'foo' (line 2: import foo)",
    ),
    (
        "import torch\ndef grade(s, i):\n    return 1.0",
        "ModuleNotFoundError: No module named 'torch' (line 1",
    ),
    (
        "def grade(sample, item):\n    n = len(item)\n    return 1 / n",
        "grade() failed: ZeroDivisionError: division by zero (line 3: return 1 / n)",
    ),
    (
        "import numpy as np\ndef grade(s, i):\n    return float(np.linalg.inv(np.zeros((2, 2)))[0, 0])",
        "LinAlgError: Singular matrix (line 3: return float(np.linalg.inv",
    ),
]


@pytest.mark.parametrize("source,message", ERRORS)
def test_the_graders_own_exception_is_the_error(source: str, message: str) -> None:
    grade = PythonGrader(source, limits=LIMITS).grade("x", {})
    assert grade.score == 0.0 and message in (grade.error or ""), grade.error
    assert "exit status" not in grade.error


def test_a_missing_module_error_says_what_can_be_imported() -> None:
    grade = PythonGrader("import foo\ndef grade(s, i):\n    return 1.0", limits=LIMITS).grade("x", {})
    assert "python graders can import the standard library and" in grade.error
    assert "numpy" in grade.error and "Traceback" in grade.details["stderr"]


def test_the_full_traceback_stays_in_details() -> None:
    source = "import numpy as np\ndef grade(s, i):\n    return float(np.linalg.inv(np.zeros((2, 2)))[0, 0])"
    trace = PythonGrader(source, limits=LIMITS).grade("x", {}).details["traceback"]
    assert trace.startswith("Traceback") and trace.rstrip().endswith("LinAlgError: Singular matrix")
    assert 'File "main.py", line 3, in grade' in trace and "np.linalg.inv(np.zeros" in trace
    assert "numpy/linalg" in trace  # the frames inside numpy, below the grader's own line


def test_the_extra_installs_exactly_the_documented_list() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(extras["python-graders"]) == sorted(DOCUMENTED)
    assert all(os.path.isabs(site) for site in package_view().sites)


AS_NOBODY = """
import json, sys
from graders.sandbox import Limits, Sandbox
sandbox = Sandbox(Limits(wall_s=10.0), packages=True)
result = sandbox.run('''
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for path in ("/tmp", sys.path[-1]):
    out["umount " + path] = (libc.umount2(path.encode(), 2), ctypes.get_errno())
    out["remount rw " + path] = (libc.mount(None, path.encode(), None, 32 | 4096, None), ctypes.get_errno())
out["uid"] = os.getuid()
print(json.dumps(out))
''')
print(json.dumps({"mode": sandbox.info.mode, "status": result.status, "out": result.stdout, "err": result.stderr}))
"""


def test_a_grader_that_is_not_root_leaves_the_submission_no_capabilities() -> None:
    """A grader running as an ordinary user gives the submission uid 0 of a fresh user namespace; with its
    capabilities it could unmount the private /tmp (reaching the real one) or remount the package view
    writable. Run as `nobody` with the system python3, every such attempt must fail with EPERM (1)."""
    setpriv, python = shutil.which("setpriv"), "/usr/bin/python3"
    if os.geteuid() != 0 or not setpriv or not os.access(python, os.X_OK):
        pytest.skip("needs root (to become nobody), setpriv and /usr/bin/python3")
    # The checkout may sit in a directory only root can read (CI clones into a mktemp -d): give nobody a
    # world-readable copy of the graders package.
    readable = Path(tempfile.mkdtemp(prefix="rft-nobody-"))
    try:
        shutil.copytree(ROOT / "graders", readable / "graders", ignore=shutil.ignore_patterns("__pycache__"))
        for path in [readable, *readable.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        run = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", AS_NOBODY],
            cwd="/",
            env={"PYTHONPATH": str(readable), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(readable)
    assert run.returncode == 0 and run.stdout.strip(), run.stderr[-2000:]
    report = json.loads(run.stdout.splitlines()[-1])
    if report["mode"] != "namespaces":
        pytest.skip("unprivileged user namespaces are not available here")
    assert report["status"] == "ok", report["err"]
    attempts = json.loads(report["out"])
    assert attempts.pop("uid") == 0
    assert attempts and all(rc == -1 and errno_ == 1 for rc, errno_ in attempts.values()), attempts
