"""Part-of-speech tags for the homograph rule of the English frontend.

The official frontend tags every sentence with NLTK's `pos_tag` (NLTK's averaged perceptron tagger,
Penn Treebank tags) and uses the tag only for the ~370 homographs of g2p_en (`present`, `record`,
`object`, `read`, ...). That model's weights are NLTK data, not on PyPI. Here, in this order:

1. **NLTK's own model** (`taggers/averaged_perceptron_tagger_eng/`, JSON) when it is already
   installed locally in an NLTK data folder (NLTK's search path: `NLTK_DATA`, `~/nltk_data`, the
   Python prefix, `/usr/(local/)(share|lib)/nltk_data`, or `nltk.data.path` when NLTK is already
   imported): the official tagger, exact parity. Nothing is ever downloaded. Only the JSON format
   (nltk ≥ 3.9) is used; an old pickle-format model is ignored.
2. Otherwise **textblob-aptagger 0.2.0's weights** (PyPI, MIT): the same algorithm and feature set
   (Honnibal's averaged perceptron, which NLTK's tagger is a port of) trained separately, so its
   tags can differ from NLTK's on some sentences. Its model is a 2013 pickle; it is read with an
   unpickler that allows no global but `set`, so it can only produce plain dicts/sets/strings/floats.

Either model is run by `PerceptronTagger` below, a re-implementation of the inference of NLTK's
`nltk.tag.perceptron.PerceptronTagger` (same features, same summation order, same tie-break), so
that English text never pays NLTK's import (~1.5-3 CPU-seconds: `nltk/__init__` imports scipy.stats
and more). tests/test_g2p_en.py checks it against NLTK's class on the same weights.

Which one is used is logged once (INFO) and reported by `tagger_name()`. Either way the tagger is
loaded lazily, only when a sentence contains a homograph.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from gptsovits_train.text.en_lexicon import LexiconError

LOG = logging.getLogger(__name__)

TEXTBLOB_MODEL = "trontagger-0.1.0.pickle"
NLTK_RESOURCE = "taggers/averaged_perceptron_tagger_eng"
NLTK_MODEL = "averaged_perceptron_tagger_eng"


class Tagger(Protocol):
    def tag(self, tokens: list[str]) -> list[tuple[str, str]]: ...


class _SetOnlyUnpickler(pickle.Unpickler):
    """Allows the one global the textblob-aptagger model needs (`set`), nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("__builtin__", "set"), ("builtins", "set")):
            return set
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in the POS tagger model")


def _textblob_model_path() -> Path:
    spec = importlib.util.find_spec("textblob_aptagger")  # located, not imported
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise LexiconError(
            "no POS tagger for English homographs: install textblob-aptagger "
            "(pip install textblob-aptagger==0.2.0) or NLTK's averaged_perceptron_tagger_eng data"
        )
    return Path(locations[0]) / TEXTBLOB_MODEL


class PerceptronTagger:
    """Averaged-perceptron POS tagging with given weights, as NLTK's `PerceptronTagger.tag` does it.

    Args:
        weights: feature -> {tag: weight}; the order of each inner dict is the summation order.
        tagdict: words that always get one tag (looked up before the model, case kept).
        classes: every tag the model can output.
    """

    START = ("-START-", "-START2-")
    END = ("-END-", "-END2-")

    def __init__(self, weights: dict[str, dict[str, float]], tagdict: dict[str, str], classes: set[str]):
        self.weights = weights
        self.tagdict = tagdict
        self.classes = classes

    @staticmethod
    def normalize(word: str) -> str:
        """The word as a context feature: `!HYPHEN`, `!YEAR` (4 digits), `!DIGITS`, else lower case."""
        if "-" in word and word[0] != "-":
            return "!HYPHEN"
        if word.isdigit() and len(word) == 4:
            return "!YEAR"
        if word and word[0].isdigit():
            return "!DIGITS"
        return word.lower()

    def features(self, i: int, word: str, context: Sequence[str], prev: str, prev2: str) -> list[str]:
        """The 14 feature names of token `i` (context index `i + 2`), in NLTK's order."""
        c = i + len(self.START)
        return [
            "bias",
            f"i suffix {word[-3:]}",
            f"i pref1 {word[0] if word else ''}",
            f"i-1 tag {prev}",
            f"i-2 tag {prev2}",
            f"i tag+i-2 tag {prev} {prev2}",
            f"i word {context[c]}",
            f"i-1 tag+i word {prev} {context[c]}",
            f"i-1 word {context[c - 1]}",
            f"i-1 suffix {context[c - 1][-3:]}",
            f"i-2 word {context[c - 2]}",
            f"i+1 word {context[c + 1]}",
            f"i+1 suffix {context[c + 1][-3:]}",
            f"i+2 word {context[c + 2]}",
        ]

    def predict(self, features: Sequence[str]) -> str:
        """The best tag: sum the weights of the features (in order), highest (score, tag) wins."""
        scores: dict[str, float] = {}
        for feat in features:
            for label, weight in self.weights.get(feat, {}).items():
                scores[label] = scores.get(label, 0.0) + weight
        return max(self.classes, key=lambda label: (scores.get(label, 0.0), label))

    def tag(self, tokens: list[str]) -> list[tuple[str, str]]:
        prev, prev2 = self.START
        context = [*self.START, *(self.normalize(w) for w in tokens), *self.END]
        out: list[tuple[str, str]] = []
        for i, word in enumerate(tokens):
            tag = self.tagdict.get(word)
            if not tag:
                tag = self.predict(self.features(i, word, context, prev, prev2))
            out.append((word, tag))
            prev2, prev = prev, tag
        return out


def load_textblob_tagger(path: Path | None = None) -> Tagger:
    """`PerceptronTagger` with textblob-aptagger's weights (weights, tagdict, classes)."""
    path = path or _textblob_model_path()
    try:
        with path.open("rb") as f:
            model = _SetOnlyUnpickler(f, encoding="utf-8").load()
    except FileNotFoundError as exc:
        raise LexiconError(f"textblob-aptagger's model {path} is missing") from exc
    if not (isinstance(model, tuple) and len(model) == 3):
        raise LexiconError(f"{path}: expected a (weights, tagdict, classes) tuple")
    weights, tagdict, classes = model
    if not (isinstance(weights, dict) and isinstance(tagdict, dict) and isinstance(classes, set)):
        raise LexiconError(f"{path}: unexpected model layout")
    return PerceptronTagger(weights, tagdict, set(classes))


def nltk_data_dirs() -> list[Path]:
    """NLTK's data search path, without importing NLTK (its own list when it is already imported)."""
    nltk_data = sys.modules.get("nltk.data")
    if nltk_data is not None:
        return [Path(p) for p in getattr(nltk_data, "path", []) if isinstance(p, str | os.PathLike)]
    dirs = [Path(os.path.expanduser(d)) for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    if "APPENGINE_RUNTIME" not in os.environ and os.path.expanduser("~/") != "~/":
        dirs.append(Path(os.path.expanduser("~/nltk_data")))
    prefix = Path(sys.prefix)
    dirs += [prefix / "nltk_data", prefix / "share" / "nltk_data", prefix / "lib" / "nltk_data"]
    dirs += [Path(d) for d in ("/usr/share/nltk_data", "/usr/local/share/nltk_data")]
    dirs += [Path(d) for d in ("/usr/lib/nltk_data", "/usr/local/lib/nltk_data")]
    return dirs


def _nltk_model_dir() -> Path | None:
    """The first NLTK data folder holding the JSON files of the official tagger model."""
    for root in nltk_data_dirs():
        folder = root / NLTK_RESOURCE
        parts = ("weights", "tagdict", "classes")
        if all((folder / f"{NLTK_MODEL}.{part}.json").is_file() for part in parts):
            return folder
    return None


def load_nltk_tagger(folder: Path) -> Tagger:
    """`PerceptronTagger` with NLTK's JSON model files in `folder`."""
    parts = []
    for part in ("weights", "tagdict", "classes"):
        path = folder / f"{NLTK_MODEL}.{part}.json"
        try:
            parts.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise LexiconError(f"cannot read NLTK's tagger model {path}: {exc}") from exc
    weights, tagdict, classes = parts
    if not (isinstance(weights, dict) and isinstance(tagdict, dict) and isinstance(classes, list)):
        raise LexiconError(f"{folder}: unexpected layout of NLTK's tagger model")
    return PerceptronTagger(weights, tagdict, set(classes))


@cache
def _tagger() -> tuple[Tagger, str]:
    folder = _nltk_model_dir()
    if folder is not None:
        name = "NLTK averaged_perceptron_tagger_eng (the official model)"
        tagger = load_nltk_tagger(folder)
    else:
        name = "textblob-aptagger 0.2.0 weights (stand-in: NLTK's model is not installed)"
        tagger = load_textblob_tagger()
    LOG.debug("English homograph POS tagger: %s", name)
    return tagger, name


def tagger_name() -> str:
    """Which model tags the homographs (loads it if needed)."""
    return _tagger()[1]


def pos_tags(tokens: Sequence[str]) -> list[str]:
    """Penn Treebank tag per token (the whole sentence is tagged, as upstream)."""
    if not tokens:
        return []
    tagger, _ = _tagger()
    return [tag for _, tag in tagger.tag(list(tokens))]
