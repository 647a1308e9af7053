"""The README's promises: it opens with the two commands, and its custom-task snippet really works."""

from __future__ import annotations

import re
from pathlib import Path

from graders.base import Sample
from tasks.base import load_task

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert "rft train examples/arithmetic.yaml" in first_block[0] and "torch==2.13.0" in first_block[0]
    assert first_block[1] == "bash .ci/run"


def test_readme_custom_task_snippet_loads_and_grades(tmp_path: Path) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    path = tmp_path / "my_tasks.py"
    path.write_text(code)
    task = load_task(f"{path}:capitals")
    assert (len(task.train), len(task.test)) == (2, 1)
    item = task.test[0]
    assert task.grader.grade(Sample(task.reference(item)), item).score == 1.0
    assert task.grader.grade(Sample("Quito"), item).score == 0.0
