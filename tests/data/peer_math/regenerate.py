"""Rebuild `tests/data/peer_math/<source>.jsonl` from the peer verifiers' own test files.

    python tests/data/peer_math/regenerate.py MIRROR_ROOT

MIRROR_ROOT holds one git mirror per peer as `<owner>+<name>/repo` (what the search tool's `fetch`
leaves under /work/.mirror). Each upstream test file is read at the mirror's HEAD and walked with
`ast`: pytest `parametrize` tables and unittest `assertTrue/assertFalse(is_equiv(a, b))` calls become
one JSON line per case. Nothing is hand-typed; the rules for flags, `core` and overridden labels
are in README.md beside this file and in `core_reason` / `OVERRIDES` below.
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SOURCES: dict[str, dict[str, Any]] = {
    "math_verify": {
        "repo": "huggingface/Math-Verify",
        "license": "Apache-2.0 (LICENCE)",
        "files": [
            "tests/test_all.py",
            "tests/test_boxed.py",
            "tests/test_numina_cases.py",
            "tests/test_open_thoughts.py",
            "tests/test_strict.py",
            "tests/test_yujianll.py",
        ],
    },
    "lighteval": {
        "repo": "huggingface/lighteval",
        "license": "MIT License, Copyright (c) 2024 Hugging Face (LICENSE)",
        "files": ["tests/unit/metrics/test_extractive_match.py"],
    },
    "mario_eval": {
        "repo": "MARIO-Math-Reasoning/MARIO_EVAL",
        "license": "MIT License (setup.py classifier)",
        "files": ["math_evaluation/tests/test_is_equiv.py"],
    },
    "nemo_skills": {
        "repo": "NVIDIA/NeMo-Skills",
        "license": "Apache-2.0, Copyright (c) 2024 NVIDIA CORPORATION (LICENSE)",
        "files": ["tests/test_math_equal.py"],
    },
}

# Keyword arguments of the upstream helper whose non-default value changes what a label means.
DEFAULTS = {"precision": 6, "strict": True, "allow_set_relation_comp": False, "language": "english"}
HELPER_DEFAULT_MATCH = ["latex", "expr"]
# Calls that compare in a non-default way (MARIO's ordered, sympy-only comparison).
NON_DEFAULT_FUNCTIONS = {"are_equal_under_sympy"}
GOLD_NAMES, PRED_NAMES, EXPECTED_NAMES = {"gold"}, {"pred"}, {"expected", "result"}

# (source, test, case index within that test) -> (label we test, rule from README.md that decides it).
OVERRIDES: dict[tuple[str, str, int], tuple[bool, str]] = {
    ("math_verify", "test_string_extraction", 9): (False, "README rule 5: 1 - 1/e and 1 + 1/e differ"),
}


def _value(node: ast.expr) -> Any:
    """A literal; `Language.X` becomes "x"; f-strings over `math` are evaluated (upstream builds one float so)."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Language":
        return node.attr.lower()
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_value(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    try:
        return ast.literal_eval(node)
    except ValueError:
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if names - {"math"}:
            raise
        code = compile(ast.Expression(node), "<upstream literal>", "eval")
        return eval(code, {"__builtins__": {}, "math": math})  # arithmetic over `math` only


def _call_flags(func: ast.FunctionDef, params: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Constant keyword flags of the helper call in the test body, and flags bound to parameters."""
    fixed: dict[str, Any] = {}
    bound: dict[str, str] = {}
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in {"compare_strings", "math_equal", "verify"}:
            continue
        positional = ["gold", "pred", "language", "match_types"] if node.func.id == "compare_strings" else []
        pairs = list(zip(positional[2:], node.args[2:])) + [(k.arg, k.value) for k in node.keywords]
        for key, value in pairs:
            if isinstance(value, ast.Name) and value.id in params:
                bound[key] = value.id
            else:
                fixed[key] = _value(value)
        if node.func.id == "compare_strings":
            fixed.setdefault("match_types", HELPER_DEFAULT_MATCH)
    return fixed, bound


def _parametrized(tree: ast.Module) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each parametrized test as (name, cases), a case being {"gold", "pred", "expected", flags...}."""
    tests = []
    for func in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        for deco in func.decorator_list:
            if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize"):
                continue
            params = [p.strip() for p in _value(deco.args[0]).split(",")]
            fixed, bound = _call_flags(func, params)
            cases = []
            for element in deco.args[1].elts:
                row = dict(zip(params, _value(element))) if len(params) > 1 else {params[0]: _value(element)}
                cases.extend(_cases_from_row(func.name, row, fixed, bound))
            tests.append((func.name, cases))
    return tests


def _cases_from_row(
    test: str, row: dict[str, Any], fixed: dict[str, Any], bound: dict[str, str]
) -> list[dict[str, Any]]:
    flags = {**fixed, **{key: row[param] for key, param in bound.items()}}
    if "output_pair" in row:  # NeMo-Skills asserts math_equal(a, b) and math_equal(b, a) alike
        a, b = (str(x) for x in row["output_pair"])
        expected = test == "test_correct_examples"
        return [
            {"gold": a, "response": b, "expected": expected, "flags": flags},
            {"gold": b, "response": a, "expected": expected, "flags": flags, "order": "reversed"},
        ]
    gold = next(row[k] for k in row if k in GOLD_NAMES)
    pred = next(row[k] for k in row if k in PRED_NAMES)
    expected = next(row[k] for k in row if k in EXPECTED_NAMES)
    return [{"gold": str(gold), "response": str(pred), "expected": bool(expected), "flags": flags}]


def _unittest_cases(tree: ast.Module) -> list[tuple[str, list[dict[str, Any]]]]:
    """MARIO_EVAL style: `test_in = ...; test_out = ...; self.assertTrue(is_equiv(test_in, test_out))`."""
    tests = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for func in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            tests.append((func.name, _walk_asserts(func.body, {})))
    return tests


def _walk_asserts(body: list[ast.stmt], env: dict[str, Any]) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for stmt in body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            env[stmt.targets[0].id] = _value(stmt.value)
        elif isinstance(stmt, ast.For):
            names = [t.id for t in stmt.target.elts]  # type: ignore[attr-defined]
            for item in env[stmt.iter.id]:  # type: ignore[attr-defined]
                cases.extend(_walk_asserts(stmt.body, {**env, **dict(zip(names, item))}))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            assertion = stmt.value
            if getattr(assertion.func, "attr", "") not in {"assertTrue", "assertFalse"}:
                continue
            inner = assertion.args[0]
            assert isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
            gold, pred = (env[a.id] if isinstance(a, ast.Name) else _value(a) for a in inner.args[:2])
            flags = {"function": inner.func.id} if inner.func.id in NON_DEFAULT_FUNCTIONS else {}
            expected = assertion.func.attr == "assertTrue"  # type: ignore[attr-defined]
            cases.append({"gold": gold, "response": pred, "expected": expected, "flags": flags})
    return cases


def core_reason(case: dict[str, Any]) -> str | None:
    """Why a case is not a core label (README.md, "Flags and core labels"), or None for a core case."""
    flags = case["flags"]
    for key, default in DEFAULTS.items():
        if key in flags and key != "language" and flags[key] != default:
            if key == "precision" and flags[key] > default:
                continue
            return f"{key}={flags[key]!r} (default {default!r})"
    if flags.get("function") in NON_DEFAULT_FUNCTIONS:
        return f"non-default comparison {flags['function']}"
    restricted = set(flags.get("match_types", HELPER_DEFAULT_MATCH)) < set(HELPER_DEFAULT_MATCH)
    if restricted and not case["expected"]:
        return f"negative label under restricted extraction {flags['match_types']}"
    return None


def build(mirror_root: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for source, meta in SOURCES.items():
        git_dir = mirror_root / meta["repo"].replace("/", "+") / "repo"
        commit = subprocess.run(
            ["git", "-C", str(git_dir), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        rows = []
        for path in meta["files"]:
            text = subprocess.run(
                ["git", "-C", str(git_dir), "show", f"HEAD:{path}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            tree = ast.parse(text)
            for test, cases in _parametrized(tree) + _unittest_cases(tree):
                for index, case in enumerate(cases):
                    rows.append(_row(source, meta, commit, path, test, index, case))
        out[source] = rows
    return out


def _row(
    source: str, meta: dict[str, Any], commit: str, path: str, test: str, index: int, case: dict[str, Any]
) -> dict[str, Any]:
    label, rule = OVERRIDES.get((source, test, index), (case["expected"], None))
    reason = core_reason(case)
    row = {
        "gold": case["gold"],
        "response": case["response"],
        "expected": label,
        "source": meta["repo"],
        "commit": commit,
        "file": path,
        "test": test,
        "case": index,
        "license": meta["license"],
        "flags": case["flags"],
        "core": reason is None,
    }
    if reason:
        row["not_core"] = reason
    if rule:
        row.update(upstream_expected=case["expected"], override=rule)
    if case.get("order"):
        row["order"] = case["order"]
    return row


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for source, rows in build(Path(sys.argv[1])).items():
        with (HERE / f"{source}.jsonl").open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        core = sum(r["core"] for r in rows)
        print(f"{source}: {len(rows)} cases, {core} core")


if __name__ == "__main__":
    main()
