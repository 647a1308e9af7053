"""WordNet 3.0 for METEOR's synonym stage, found on disk: nothing is downloaded at run time.

Where it comes from, first found wins:
1. NLTK's own `corpora/wordnet` (or `wordnet.zip`) on `nltk.data.path` / $NLTK_DATA, read as NLTK ships it.
2. The WordNet database directory: $WNSEARCHDIR (WordNet's own variable for it), else `/usr/share/wordnet`,
   where Debian's `wordnet-base` puts the Princeton files (`data.*`, `index.*`, `*.exc`, `cntlist.rev`;
   `wordnet-sense-index` adds `index.sense`). No PyPI package ships the corpus.

NLTK's reader reads this format but also wants a `lexnames` file, which Princeton documents (lexnames(5WN))
and does not ship. It is a fixed table, so it is written out below (not parsed from the man page, which slim
container images drop) and served from memory rather than assembled into a cache directory: NLTK 3.10.4
refuses symlinks and hard links out of a reader's root, so a cache would have to copy the 36 MB database
into a writable home. The database directory is added to `nltk.data.path`, which NLTK's path checks require
of every root it reads.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path
from typing import Any

from graders.base import GraderInputError

INSTALL_HINT = "apt-get install wordnet-base wordnet-sense-index"
DEBIAN_DIR = "/usr/share/wordnet"
# Files NLTK's reader opens to build its indices and look up synsets; index.sense and cntlist.rev are
# read only by sense-key and lemma-count lookups, which METEOR does not make.
_POS = ("noun", "verb", "adj", "adv")
NEEDED = tuple(name for pos in _POS for name in (f"data.{pos}", f"index.{pos}", f"{pos}.exc"))
# The 45 lexicographer files of WordNet 3.0, numbered 00..44 in this order (lexnames(5WN)).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)  # fmt: skip
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_text() -> str:
    """The `lexnames` file: `NN<TAB>name<TAB>category` per line, category 1-4 = noun, verb, adj, adv."""
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def nltk_has_wordnet() -> bool:
    """Whether NLTK's own WordNet corpus is on `nltk.data.path`."""
    import nltk

    for resource in ("corpora/wordnet.zip", "corpora/wordnet"):
        try:
            nltk.data.find(resource)
            return True
        except LookupError:
            continue
    return False


def database_dir() -> Path | None:
    """The WordNet database directory ($WNSEARCHDIR, else Debian's), if it holds every file NLTK needs."""
    root = Path(os.environ.get("WNSEARCHDIR") or DEBIAN_DIR)
    return root if all((root / name).is_file() for name in NEEDED) else None


@functools.cache
def _nltk_reader() -> Any:
    from nltk.corpus import wordnet

    wordnet.ensure_loaded()
    return wordnet


@functools.cache
def _database_reader(root: Path) -> Any:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class DatabaseReader(WordNetCorpusReader):
        """NLTK's reader over a bare Princeton database, with the `lexnames` table it lacks."""

        def open(self, file: str) -> Any:
            return io.StringIO(lexnames_text()) if file == "lexnames" else super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            """No synset mapping: it maps NLTK's own 3.0 copy onto this one for multilingual lookups only."""

    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():
        # Warns that multilingual lookups are off: METEOR is English-only and never asks for them.
        warnings.filterwarnings("ignore", "The multilingual functions are not available")
        return DatabaseReader(str(root), None)


def load_wordnet() -> Any:
    """An NLTK WordNet reader, built once per process; `GraderInputError` naming the fix when none is on disk."""
    if nltk_has_wordnet():
        return _nltk_reader()
    root = database_dir()
    if root is None:
        raise GraderInputError(
            "evaluation_metric 'meteor' needs the WordNet 3.0 database, and nothing is downloaded at run time: "
            f"install it with `{INSTALL_HINT}` (Debian/Ubuntu), or set WNSEARCHDIR to a WordNet dict "
            "directory, or put NLTK's corpora/wordnet on NLTK_DATA; or pick another metric"
        )
    return _database_reader(root.resolve())
