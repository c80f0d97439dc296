"""Part-of-speech tags for the homograph rule of the English frontend.

The official frontend tags every sentence with NLTK's `pos_tag` (NLTK's averaged perceptron tagger,
Penn Treebank tags) and uses the tag only for the ~370 homographs of g2p_en (`present`, `record`,
`object`, `read`, ...). That model's weights are NLTK data, not on PyPI. Here, in this order:

1. **NLTK's own model** (`taggers/averaged_perceptron_tagger_eng/`, JSON) when it is already
   installed locally in an NLTK data folder: the official tagger, exact parity. Nothing is ever
   downloaded (`nltk.data.find` only looks). Only the JSON format (nltk ≥ 3.9) is used; an old
   pickle-format model is ignored.
2. Otherwise **textblob-aptagger 0.2.0's weights** (PyPI, MIT): the same algorithm and feature set
   (Honnibal's averaged perceptron, which NLTK's tagger is a port of) trained separately, so its
   tags can differ from NLTK's on some sentences. They are run by NLTK's `PerceptronTagger` code,
   as upstream. Its model is a 2013 pickle; it is read with an unpickler that allows no global but
   `set`, so it can only produce plain dicts/sets/strings/floats.

Which one is used is logged once (INFO) and reported by `tagger_name()`. Either way the tagger is
loaded lazily, only when a sentence contains a homograph.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from gptsovits_train.text.en_lexicon import LexiconError

LOG = logging.getLogger(__name__)

TEXTBLOB_MODEL = "trontagger-0.1.0.pickle"
NLTK_RESOURCE = "taggers/averaged_perceptron_tagger_eng/"


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


def load_textblob_tagger(path: Path | None = None) -> Tagger:
    """NLTK's PerceptronTagger running textblob-aptagger's weights (weights, tagdict, classes)."""
    from nltk.tag.perceptron import PerceptronTagger

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
    tagger = PerceptronTagger(load=False)
    tagger.model.weights = weights
    tagger.tagdict = tagdict
    tagger.classes = tagger.model.classes = set(classes)
    return tagger


def _nltk_model_installed() -> bool:
    import nltk.data

    try:
        nltk.data.find(NLTK_RESOURCE)
    except LookupError:
        return False
    return True


@cache
def _tagger() -> tuple[Tagger, str]:
    from nltk.tag.perceptron import PerceptronTagger

    if hasattr(PerceptronTagger, "load_from_json") and _nltk_model_installed():
        name = "NLTK averaged_perceptron_tagger_eng (the official model)"
        tagger: Tagger = PerceptronTagger(load=True, lang="eng")
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
