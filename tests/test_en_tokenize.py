"""The English frontend without NLTK's import: tokens and POS tags equal NLTK's own classes' output."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gptsovits_train.text.en_normalize import english_normalize
from gptsovits_train.text.en_pos import PerceptronTagger, load_textblob_tagger
from gptsovits_train.text.en_tokenize import tweet_tokenize

REPO = Path(__file__).resolve().parents[1]


def _fixture_texts(reference_dir: Path) -> list[str]:
    return [item["text"] for item in json.loads((reference_dir / "g2p_fixture_v2.json").read_text())["en"]]


def _lj_texts(lj_mini_dir: Path) -> list[str]:
    lines = (lj_mini_dir / "metadata.csv").read_text(encoding="utf-8").splitlines()
    return [line.split("|")[-1] for line in lines if line]


@pytest.fixture(scope="module")
def nltk_tokenize():
    from nltk.tokenize.casual import TweetTokenizer

    return TweetTokenizer().tokenize


def test_tokens_equal_tweet_tokenizer_on_the_fixture(nltk_tokenize, reference_dir: Path, lj_mini_dir: Path):
    texts = _fixture_texts(reference_dir) + _lj_texts(lj_mini_dir)
    for text in texts:
        norm = english_normalize(text)
        assert tweet_tokenize(norm) == nltk_tokenize(norm), norm


def test_tokens_equal_tweet_tokenizer_on_random_normalised_text(nltk_tokenize):
    """Random strings over the normaliser's output alphabet, with the tricky pieces mixed in."""
    rng = random.Random(1234)
    pieces = [*"abcdefgHIJKLMxyzQ", *" " * 8, *",.?!'-", "com", "example.com", "a.m.", "don't", "x-ray"]
    pieces += ["rock-and-roll", "...", ". . .", "----", "''''", "e.g", "x.y.zz", " - ", "www.site.info"]
    pieces.append("a--b")
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert tweet_tokenize(text) == nltk_tokenize(text), repr(text)


def test_other_text_goes_to_nltk(nltk_tokenize):
    for text in ("Call 555-123-4567 now :-) #tag @you", "see https://a.b/c?d=1 &amp; 3.14", "ümlaut café"):
        assert tweet_tokenize(text) == nltk_tokenize(text)


def test_tagger_equals_nltk_perceptron_on_the_same_weights(reference_dir: Path, lj_mini_dir: Path):
    from nltk.tag.perceptron import PerceptronTagger as NltkTagger

    ours = load_textblob_tagger()
    assert isinstance(ours, PerceptronTagger)
    theirs = NltkTagger(load=False)
    theirs.model.weights = ours.weights
    theirs.tagdict = ours.tagdict
    theirs.classes = theirs.model.classes = set(ours.classes)
    texts = _fixture_texts(reference_dir) + _lj_texts(lj_mini_dir)
    texts += ["The 1990s saw well-known 42 things", "", "-dash 2024 I.B.M. x"]
    for text in texts:
        tokens = tweet_tokenize(english_normalize(text)) + text.split()
        assert ours.tag(tokens) == theirs.tag(tokens), text


def test_english_g2p_does_not_import_nltk(reference_dir: Path):
    """A fresh process phonemises the whole English fixture (homographs included) without NLTK."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from gptsovits_train.text import g2p
        items = json.load(open({str(reference_dir / "g2p_fixture_v2.json")!r}))["en"]
        for item in items:
            g2p(item["text"], "en")
        assert "nltk" not in sys.modules, sorted(m for m in sys.modules if m.startswith("nltk"))[:5]
        assert "scipy" not in sys.modules
        print("OK")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr
