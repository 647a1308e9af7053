"""The third-party packages a sandboxed program may import: the list OpenAI documents for its python-grader
image, resolved to the installed distributions plus their dependencies, and nothing else.

Source of the list: OpenAI's graders guide, "Python grader" (the same list, with versions, is in
MicrosoftDocs/azure-ai-docs `articles/ai-foundry/openai/how-to/reinforcement-fine-tuning.md`). The
versions are what OpenAI's image pins; here whatever version is installed is used, and `rft doctor`
prints both. Install them with `pip install 'rft[python-graders]'`.

The sandbox never sees the grader's whole site-packages: with namespaces, each site directory holding an
allowed distribution is covered by an empty read-only tmpfs into which only the allowed top-level entries
(packages, modules, `*.libs`, `*.dist-info`) are bound back read-only (`boot._show_packages`); without
namespaces, a directory of symlinks to those entries is put on the path instead.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

# distribution -> (the module it is imported as, the version OpenAI's python-grader image pins)
DOCUMENTED = {
    "numpy": ("numpy", "2.2.4"),
    "scipy": ("scipy", "1.15.2"),
    "sympy": ("sympy", "1.13.3"),
    "pandas": ("pandas", "2.2.3"),
    "rapidfuzz": ("rapidfuzz", "3.10.1"),
    "scikit-learn": ("sklearn", "1.6.1"),
    "rouge-score": ("rouge_score", "0.1.2"),
    "deepdiff": ("deepdiff", "8.4.2"),
    "jsonschema": ("jsonschema", "4.23.0"),
    "pydantic": ("pydantic", "2.10.6"),
    "pyyaml": ("yaml", "6.0.2"),
    "nltk": ("nltk", "3.9.1"),
    "sqlparse": ("sqlparse", "0.5.3"),
    "rdkit": ("rdkit", "2024.9.6"),
    "scikit-bio": ("skbio", "0.6.3"),
    "ast-grep-py": ("ast_grep_py", "0.36.2"),
}
_SITE_NAMES = ("site-packages", "dist-packages")
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*(?:;(.*))?")


@dataclass(frozen=True)
class PackageView:
    """What a sandboxed program can import beyond the standard library."""

    sites: dict[str, tuple[str, ...]]  # site directory -> the top-level entries shown from it
    installed: dict[str, str]  # documented distribution -> installed version
    missing: tuple[str, ...]  # documented distributions not installed here

    def report(self) -> dict[str, dict[str, str | None]]:
        """For `rft doctor`: each documented distribution's module, installed and OpenAI-pinned version."""
        return {
            name: {"module": module, "installed": self.installed.get(name), "openai": pinned}
            for name, (module, pinned) in DOCUMENTED.items()
        }


def _normal(name: str) -> str:
    """PEP 503 name: `PyYAML`, `ruamel_yaml` and `Rouge.Score` compare as `pyyaml`, `ruamel-yaml`, `rouge-score`.

    >>> _normal("PyYAML"), _normal("rouge_score")
    ('pyyaml', 'rouge-score')
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def _needed(marker: str | None) -> bool:
    """Whether a requirement with this environment marker applies here (optional extras never do)."""
    if not marker or not marker.strip():
        return True
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker
    except ImportError:  # without `packaging`, keep the dependency: one entry too many, never one too few
        return True
    return Marker(marker).evaluate()


def _dependencies(dist: metadata.Distribution) -> list[str]:
    names = []
    for line in dist.requires or []:
        match = _REQUIREMENT.match(line)
        if match and _needed(match.group(2)):
            names.append(_normal(match.group(1)))
    return names


def _entries(dist: metadata.Distribution) -> set[str]:
    """The top-level names a distribution installs into its site directory (not scripts, not `.pth`)."""
    tops = {f.parts[0] for f in dist.files or () if f.parts and f.parts[0] != ".."}
    if not tops:
        tops = set((dist.read_text("top_level.txt") or "").split())
    return {t for t in tops if t != "__pycache__" and not t.endswith(".pth")}


def resolve(names: list[str]) -> PackageView:
    """The distributions `names` that are installed, with everything they require, as site entries."""
    names = [_normal(n) for n in names]
    sites: dict[str, set[str]] = {}
    installed: dict[str, str] = {}
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name in names:
            installed[name] = dist.version
        site = os.path.realpath(str(dist.locate_file("")))
        if os.path.basename(site) not in _SITE_NAMES:  # never cover a checkout or `/` with the view
            continue
        sites.setdefault(site, set()).update(
            e for e in _entries(dist) if os.path.lexists(os.path.join(site, e))
        )
        todo += _dependencies(dist)
    order = {os.path.realpath(p): i for i, p in enumerate(sys.path)}
    ordered = sorted(sites, key=lambda s: order.get(s, len(order)))
    return PackageView(
        {s: tuple(sorted(sites[s])) for s in ordered if sites[s]},
        installed,
        tuple(n for n in names if n not in installed),
    )


@cache
def package_view() -> PackageView:
    """The documented packages as installed for this interpreter (resolved once per process)."""
    return resolve(list(DOCUMENTED))


@cache
def symlink_dir() -> str:
    """A directory of symlinks to the shown entries, for the sandbox without namespaces (removed at exit)."""
    path = tempfile.mkdtemp(prefix="rft-packages-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.chmod(path, 0o755)
    for site, entries in package_view().sites.items():
        for entry in entries:
            if not os.path.lexists(os.path.join(path, entry)):
                os.symlink(os.path.join(site, entry), os.path.join(path, entry))
    return path


def package_cfg(mode: str, interpreter: str, enabled: bool) -> dict[str, Any]:
    """A run's `packages` (site entries `boot._show_packages` binds) and `path` (added to its `sys.path`).

    Only for the interpreter the packages were installed for: another one could not load their extensions.
    """
    if not enabled or interpreter != os.path.realpath(sys.executable):
        return {"packages": {}, "path": []}
    sites = package_view().sites
    if mode == "namespaces":
        return {"packages": sites, "path": list(sites)}
    return {"packages": {}, "path": [symlink_dir()] if sites else []}


def import_hint(interpreter: str) -> str:
    """What python graders can import in a sandbox running `interpreter`, for a failed import's error."""
    if interpreter != os.path.realpath(sys.executable):
        return (
            f"; python graders can import the standard library only: the sandbox runs {interpreter}, "
            f"not {os.path.realpath(sys.executable)} for which the packages are installed (see `rft doctor`)"
        )
    view = package_view()
    modules = ", ".join(sorted(DOCUMENTED[name][0] for name in view.installed))
    hint = f"; python graders can import the standard library and {modules}"
    if view.missing:
        hint += f" (OpenAI's image also has {', '.join(view.missing)}: pip install 'rft[python-graders]')"
    return hint
