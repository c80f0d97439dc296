"""Seeded, machine-independent train/validation split, stratified by duration.

Rules (`assign_split`):

- The number of validation clips is ``floor(n * val_ratio + 0.5)`` (round half up), at least 1 whenever
  there are 2 or more clips, and at most ``n - 1`` (a split always keeps a training clip). With one clip
  there is no validation clip.
- Stratified by duration: clips are ordered by (sample count, id) and cut into `n_val` consecutive strata
  of (nearly) equal size; one clip of each stratum is drawn. So short, middle and long clips are all
  represented in validation.
- Deterministic on every machine: the order depends only on ids and sample counts (no Python `hash()`,
  no file-system order), and the draw uses numpy's PCG64 generator seeded with `seed`.
- `pinned` (from `--val-list`) replaces the draw: exactly the clips named there are validation.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitItem:
    """What the split needs to know about one clip."""

    id: str
    n_samples: int


def n_val_clips(n: int, val_ratio: float) -> int:
    """Validation clip count for `n` clips (see module doc)."""
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    if n < 2:
        return 0
    k = int(np.floor(n * val_ratio + 0.5))
    return min(max(k, 1), n - 1)


def assign_split(
    items: Sequence[SplitItem],
    val_ratio: float,
    seed: int,
    pinned: Iterable[str] | None = None,
) -> dict[str, str]:
    """Map every clip id to "train" or "val".

    Args:
        items: the clips (ids unique).
        val_ratio: fraction of clips for validation.
        seed: any int; same items + seed -> same split everywhere.
        pinned: ids that must be validation (replaces the seeded draw when given).
    """
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("clip ids must be unique")
    if pinned is not None:
        pin = set(pinned)
        return {i: ("val" if i in pin else "train") for i in ids}
    order = sorted(items, key=lambda it: (it.n_samples, it.id))
    n = len(order)
    k = n_val_clips(n, val_ratio)
    out = dict.fromkeys(ids, "train")
    if k == 0:
        return out
    rng = np.random.Generator(np.random.PCG64(seed))
    bounds = [(j * n) // k for j in range(k + 1)]
    for lo, hi in itertools.pairwise(bounds):
        pick = lo + int(rng.integers(0, hi - lo))
        out[order[pick].id] = "val"
    return out


def read_val_list(path: Path | str) -> list[str]:
    """Entries of a `--val-list` file: one clip id or wav path per line; `#` starts a comment.

    A `.list`-style line (``path|speaker|LANG|text``) contributes its path.
    """
    path = Path(path)
    out = []
    for raw in path.read_text(encoding="utf-8-sig").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append(line.split("|", 1)[0].strip())
    return out


def resolve_val_list(entries: Iterable[str], clip_keys: dict[str, list[str]]) -> tuple[set[str], list[str]]:
    """Match `--val-list` entries to clip ids.

    Args:
        entries: lines of the val list (ids, wav paths, or source paths).
        clip_keys: clip id -> names it may be referred to by (id, wav file name, source path/name, ...).
    Returns:
        (matched clip ids, entries that matched nothing).
    """
    index: dict[str, set[str]] = {}
    for cid, keys in clip_keys.items():
        for key in {cid, *keys}:
            index.setdefault(key, set()).add(cid)
    matched: set[str] = set()
    unmatched: list[str] = []
    for entry in entries:
        norm = entry.replace("\\", "/")
        candidates = [norm, Path(norm).name, Path(norm).stem]
        hit = next((index[c] for c in candidates if c in index), None)
        if hit is None:
            unmatched.append(entry)
        else:
            matched |= hit
    return matched, unmatched


#: Fewer validation clips than this makes the validation loss (and early stopping) follow noise.
MIN_USEFUL_VAL_CLIPS = 3


def clips_needed(n_val: int, val_ratio: float) -> int | None:
    """The smallest clip count whose seeded split has `n_val` validation clips (None: never)."""
    for n in range(2, 100_000):
        if n_val_clips(n, val_ratio) >= n_val:
            return n
    return None


def split_warning(n_train: int, n_val: int, val_ratio: float, *, pinned: bool = False) -> str | None:
    """What is wrong with a train/val split for `fit`, or None when it is usable.

    `fit` needs at least one clip on each side; fewer than `MIN_USEFUL_VAL_CLIPS` validation clips
    train fine but make early stopping follow the noise of one or two clips. `pinned`: the validation
    clips were named by --val-list (the advice is then about that list, not about val_ratio).
    """
    useful = clips_needed(MIN_USEFUL_VAL_CLIPS, val_ratio)
    if pinned:
        more = "name more clips in --val-list"
    elif useful is not None:
        more = f"about {useful} clips give {MIN_USEFUL_VAL_CLIPS} validation clips at val_ratio {val_ratio:g}"
    else:
        more = f"raise prepare.split.val_ratio (now {val_ratio:g}) or pin clips with --val-list"
    total = n_train + n_val
    if n_val == 0:
        if total < 2:
            return (
                f"no validation clip: {total} clip(s) cannot be split, and fit needs at least one training "
                f"and one validation clip; add audio (2 clips at the very least; {more})"
            )
        return "no validation clip (--val-list matched none); fit needs at least one: fix --val-list"
    if n_train == 0:
        return None  # reported by prepare itself ("every clip is in the validation set")
    if n_val < MIN_USEFUL_VAL_CLIPS:
        return (
            f"only {n_val} validation clip(s): validation loss and early stopping will follow the noise of "
            f"so few clips; {more}"
        )
    return None
