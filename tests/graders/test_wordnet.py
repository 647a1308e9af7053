"""Finding WordNet offline: the lexnames table, NLTK's copy before the database directory, and the refusal."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nltk
import pytest

from graders.base import GraderInputError
from graders.similarity import TextSimilarityGrader
from graders.wordnet import INSTALL_HINT, LEXNAMES, NEEDED, database_dir, lexnames_text, load_wordnet

ROOT = Path(__file__).resolve().parents[2]
MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
needs_database = pytest.mark.skipif(database_dir() is None, reason=f"no WordNet database: {INSTALL_HINT}")


def test_lexnames_file_format() -> None:
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2"
    assert lines[44] == "44\tadj.ppl\t3"


@pytest.mark.skipif(not MAN_PAGE.is_file(), reason="the wordnet-base man pages are not installed")
def test_lexnames_match_the_installed_man_page() -> None:
    """lexnames(5WN) tabulates `NN<TAB>name<TAB>contents`; the names must be ours, in the same order."""
    rows = re.findall(r"^(\d\d)\t(\S+)\s*\t", gzip.decompress(MAN_PAGE.read_bytes()).decode(), re.MULTILINE)
    assert [int(number) for number, _ in rows] == list(range(45))
    assert tuple(name for _, name in rows) == LEXNAMES


@needs_database
def test_reader_over_the_database_directory_knows_the_lexicographer_files() -> None:
    wordnet = load_wordnet()
    assert wordnet.synset("entity.n.01").lexname() == "noun.Tops"
    assert wordnet.synset("dog.n.01").lexname() == "noun.animal"
    assert wordnet.synset("run.v.01").lexname() == "verb.motion"
    assert {lemma.name() for lemma in wordnet.synset("car.n.01").lemmas()} >= {"car", "auto", "automobile"}
    assert wordnet.morphy("geese") == "goose"  # noun.exc is read
    assert load_wordnet() is wordnet  # built once per process


def test_no_wordnet_anywhere_is_refused_naming_the_apt_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path))
    (tmp_path / "data.noun").write_text("")  # a partial database is not enough
    with pytest.raises(GraderInputError, match=re.escape(INSTALL_HINT)):
        load_wordnet()
    with pytest.raises(GraderInputError, match="'meteor' needs the WordNet 3.0 database"):
        TextSimilarityGrader(evaluation_metric="meteor")


CHILD = """
import json
from graders.wordnet import load_wordnet
from graders.similarity import meteor
print(json.dumps({"root": str(load_wordnet().root), "score": meteor("the car is red", "the auto is red")}))
"""


@needs_database
def test_nltk_data_copy_is_preferred_to_the_database_directory(tmp_path: Path) -> None:
    """NLTK's layout (corpora/wordnet with lexnames) wins; a fresh interpreter, as the reader is per process.

    Files are copied, not linked: NLTK's path checks refuse symlinks and hard links out of its data root.
    NLTK maps its "wordnet" corpus onto itself through index.sense (wordnet-sense-index), so it is copied too.
    """
    if not (database_dir() / "index.sense").is_file():
        pytest.skip(f"no index.sense: {INSTALL_HINT}")
    corpus = tmp_path / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    for name in (*NEEDED, "index.sense"):
        shutil.copyfile(database_dir() / name, corpus / name)
    (corpus / "lexnames").write_text(lexnames_text())
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert Path(report["root"]).resolve() == corpus.resolve()
    assert report["score"] == pytest.approx(1 - 0.5 * (1 / 4) ** 3)
