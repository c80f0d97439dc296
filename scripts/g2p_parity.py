"""Phoneme parity of our text frontend with the official GPT-SoVITS one, on the shared g2p fixture.

For every sentence of `shared/reference/g2p_fixture_v2.json` (made with the official
`clean_text(text, language, "v2")`), runs `gptsovits_train.text.g2p` and compares:

- phones (exact sequence) → the phone-exact rate per language, with every mismatch listed
  (expected vs got, the differing stretch marked); English mismatches that are explained by a
  homograph read with the other pronunciation (POS-dependent words like "read", "record") are
  counted apart, since the official POS tagger is not reproducible offline;
- where the phones match: norm_text and word2ph must match too;
- the `prepare_text_examples`: the official data-prep substitution (`%`→`-`, `￥`→`,`) then g2p.

Exits 1 when a language is below its target (zh ≥ 98 %, en ≥ 90 % phone-exact by default), when a
matching sentence has a different norm_text/word2ph, or when a prepare example differs.

    python scripts/g2p_parity.py [--lang zh|en|all] [--fixture PATH] [--zh-target 0.98] [--en-target 0.9]
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptsovits_train.text import TextError, g2p, official_prepare_replace

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = REPO.parent / "shared" / "reference" / "g2p_fixture_v2.json"

# The official English frontend overrides two homograph entries (shared/docs/text-frontend.md §2.2).
_HOMOGRAPH_OVERRIDES = {
    "read": (("R", "IY1", "D"), ("R", "EH1", "D")),
    "complex": (("K", "AH0", "M", "P", "L", "EH1", "K", "S"), ("K", "AA1", "M", "P", "L", "EH0", "K", "S")),
}


def load_homographs() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """g2p_en's homograph list: word → (pronunciation for its POS, the other pronunciation)."""
    table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    # locate the file without importing g2p_en (its import tries to download NLTK data)
    spec = importlib.util.find_spec("g2p_en")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "homographs.en" if locations else None
    if path is None or not path.is_file():
        print("warning: g2p_en's homographs.en not found; homograph mismatches are not told apart")
        return dict(_HOMOGRAPH_OVERRIDES)
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("#") or line.count("|") != 3:
            continue
        word, first, second, _pos = line.split("|")
        table[word.lower()] = (tuple(first.split()), tuple(second.split()))
    table.update(_HOMOGRAPH_OVERRIDES)
    return table


def _contains(seq: tuple[str, ...], part: list[str]) -> bool:
    n = len(part)
    return any(list(seq[i : i + n]) == part for i in range(len(seq) - n + 1))


def homograph_explains(text: str, expected: list[str], got: list[str], homographs: dict[str, Any]) -> bool:
    """True if every differing stretch is one pronunciation of a homograph in `text` vs the other."""
    words = {w.strip(".,!?;:\"'()").lower() for w in text.split()}
    prons = [homographs[w] for w in words if w in homographs]
    if not prons:
        return False
    matcher = difflib.SequenceMatcher(a=expected, b=got, autojunk=False)
    hunks = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    for _, i1, i2, j1, j2 in hunks:
        exp, out = expected[i1:i2], got[j1:j2]
        if not any(
            (_contains(a, exp) and _contains(b, out)) or (_contains(b, exp) and _contains(a, out))
            for a, b in prons
        ):
            return False
    return bool(hunks)


def mark_diff(expected: list[str], got: list[str]) -> tuple[str, str]:
    """Both sequences as text with the differing stretches in [brackets]."""
    matcher = difflib.SequenceMatcher(a=expected, b=got, autojunk=False)
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        a, b = " ".join(expected[i1:i2]), " ".join(got[j1:j2])
        if op == "equal":
            left.append(a)
            right.append(b)
        else:
            left.append(f"[{a}]")
            right.append(f"[{b}]")
    return " ".join(x for x in left if x), " ".join(x for x in right if x)


@dataclass
class LanguageReport:
    language: str
    total: int = 0
    exact: int = 0
    homograph: int = 0
    errors: int = 0
    aux_mismatch: int = 0  # phones match but norm_text / word2ph differ
    lines: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.exact / self.total if self.total else 0.0


def check_language(items: list[dict[str, Any]], language: str, homographs: dict[str, Any]) -> LanguageReport:
    rep = LanguageReport(language)
    for item in items:
        rep.total += 1
        text = item["text"]
        try:
            phones, word2ph, norm = g2p(text, language)
        except TextError as exc:
            rep.errors += 1
            rep.lines.append(f"  ERROR {text!r}: {exc}")
            continue
        if phones == item["phones"]:
            rep.exact += 1
            problems = []
            if norm != item["norm_text"]:
                problems.append(f"norm_text expected {item['norm_text']!r} got {norm!r}")
            if word2ph != item["word2ph"]:
                problems.append(f"word2ph expected {item['word2ph']} got {word2ph}")
            if problems:
                rep.aux_mismatch += 1
                rep.lines.append(f"  PHONES OK, OTHER FIELDS DIFFER {text!r}: " + "; ".join(problems))
            continue
        kind = "MISMATCH"
        if language == "en" and homograph_explains(text, item["phones"], phones, homographs):
            rep.homograph += 1
            kind = "MISMATCH (homograph)"
        exp, out = mark_diff(item["phones"], phones)
        rep.lines.append(f"  {kind} {text!r}\n    expected: {exp}\n    got:      {out}")
        if norm != item["norm_text"]:
            rep.lines.append(f"    norm_text expected {item['norm_text']!r}\n    norm_text got      {norm!r}")
    return rep


def check_prepare_examples(items: list[dict[str, Any]], languages: set[str]) -> tuple[int, int, list[str]]:
    ok = 0
    total = 0
    lines: list[str] = []
    for item in items:
        if item["language"] not in languages:
            continue
        total += 1
        passed = official_prepare_replace(item["raw_text"])
        try:
            phones, word2ph, norm = g2p(passed, item["language"])
        except TextError as exc:
            lines.append(f"  ERROR {item['raw_text']!r}: {exc}")
            continue
        if passed == item["text_passed_to_clean_text"] and (phones, word2ph, norm) == (
            item["phones"],
            item["word2ph"],
            item["norm_text"],
        ):
            ok += 1
        else:
            exp, out = mark_diff(item["phones"], phones)
            lines.append(f"  MISMATCH {item['raw_text']!r}\n    expected: {exp}\n    got:      {out}")
    return ok, total, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    parser.add_argument("--lang", choices=["zh", "en", "all"], default="all")
    parser.add_argument("--zh-target", type=float, default=0.98)
    parser.add_argument("--en-target", type=float, default=0.90)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    fixture = json.loads(args.fixture.read_text(encoding="utf-8"))
    languages = ["zh", "en"] if args.lang == "all" else [args.lang]
    targets = {"zh": args.zh_target, "en": args.en_target}
    homographs = load_homographs()
    failed = False

    reports = [check_language(fixture[lang], lang, homographs) for lang in languages]
    for rep in reports:
        print(f"\n== {rep.language}: {rep.exact}/{rep.total} phone-exact")
        print("\n".join(rep.lines) if rep.lines else "  (no mismatch)")
    ok, total, lines = check_prepare_examples(fixture["prepare_text_examples"]["items"], set(languages))
    print(f"\n== prepare_text_examples: {ok}/{total} exact")
    print("\n".join(lines) if lines else "  (no mismatch)")

    header = (
        "language  sentences  phone-exact  rate     target  homograph-mismatches  errors  norm/word2ph-diffs"
    )
    print("\n" + header)
    for rep in reports:
        below = rep.rate < targets[rep.language]
        failed |= below or rep.aux_mismatch > 0
        homo = str(rep.homograph) if rep.language == "en" else "-"
        target = targets[rep.language]
        print(
            f"{rep.language:<9} {rep.total:>9}  {rep.exact:>11}  {rep.rate:>6.1%}  {target:>6.0%}"
            f"  {homo:>20}  {rep.errors:>6}  {rep.aux_mismatch:>18}{'  BELOW TARGET' if below else ''}"
        )
    print(f"prepare   {total:>9}  {ok:>11}  {ok / total if total else 0:>6.1%}    100%")
    failed |= ok != total
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
