"""Train/val split: deterministic, seeded, stratified by duration, with the documented count rules."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from gptsovits_train.data.split import (
    SplitItem,
    assign_split,
    n_val_clips,
    read_val_list,
    resolve_val_list,
)


def make_items(n: int, seed: int = 0) -> list[SplitItem]:
    rng = np.random.default_rng(seed)
    return [SplitItem(f"clip{i:04d}", int(rng.integers(20_000, 640_000))) for i in range(n)]


# (n clips, ratio) -> expected validation count: round-half-up of n*ratio, >=1 when n>=2, <= n-1
COUNT_TABLE = [
    (0, 0.1, 0),
    (1, 0.1, 0),
    (2, 0.1, 1),
    (3, 0.1, 1),
    (10, 0.1, 1),
    (14, 0.1, 1),
    (15, 0.1, 2),  # 1.5 rounds up (not banker's rounding)
    (25, 0.1, 3),  # 2.5 -> 3
    (100, 0.1, 10),
    (101, 0.1, 10),
    (12, 0.5, 6),
    (3, 0.9, 2),  # 2.7 -> 3, capped at n-1
    (5, 0.0, 1),  # at least one validation clip whenever there are two
]


@pytest.mark.parametrize(("n", "ratio", "expected"), COUNT_TABLE)
def test_val_count_table(n, ratio, expected):
    assert n_val_clips(n, ratio) == expected
    split = assign_split(make_items(n), ratio, seed=1234)
    assert sum(v == "val" for v in split.values()) == expected
    assert set(split) == {f"clip{i:04d}" for i in range(n)}


@pytest.mark.parametrize("n", [2, 7, 30, 200])
@pytest.mark.parametrize("seed", [0, 1234, 2**40])
def test_deterministic_and_order_independent(n, seed):
    items = make_items(n)
    a = assign_split(items, 0.1, seed)
    b = assign_split(list(reversed(items)), 0.1, seed)  # input order must not matter
    assert a == b


def test_seed_changes_the_draw():
    items = make_items(200)
    draws = {json.dumps(assign_split(items, 0.1, s), sort_keys=True) for s in range(5)}
    assert len(draws) > 1


@pytest.mark.parametrize(("n", "ratio"), [(10, 0.1), (50, 0.1), (200, 0.1), (60, 0.2)])
def test_stratified_by_duration(n, ratio):
    """Exactly one validation clip per duration stratum (consecutive block of the duration order)."""
    items = make_items(n, seed=n)
    split = assign_split(items, ratio, seed=7)
    order = sorted(items, key=lambda it: (it.n_samples, it.id))
    k = n_val_clips(n, ratio)
    bounds = [(j * n) // k for j in range(k + 1)]
    for lo, hi in itertools.pairwise(bounds):
        assert sum(split[it.id] == "val" for it in order[lo:hi]) == 1


def test_pinned_val_list_overrides_draw():
    items = make_items(20)
    split = assign_split(items, 0.1, seed=1, pinned={"clip0003", "clip0011"})
    assert sorted(k for k, v in split.items() if v == "val") == ["clip0003", "clip0011"]


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="unique"):
        assign_split([SplitItem("a", 1), SplitItem("a", 2)], 0.1, 0)


def test_val_list_file_and_resolution(tmp_path):
    f = tmp_path / "val.txt"
    f.write_text(
        "# comment\nclip1\nwavs/clip2.wav\n/data/src/long.wav|spk|EN|text\nnope\n\n", encoding="utf-8"
    )
    entries = read_val_list(f)
    assert entries == ["clip1", "wavs/clip2.wav", "/data/src/long.wav", "nope"]
    keys = {
        "clip1": ["wavs/clip1.wav", "/data/src/a.wav"],
        "clip2": ["wavs/clip2.wav", "/data/src/b.wav"],
        "long_0000000000_0000320000": ["/data/src/long.wav"],
        "long_0000320000_0000640000": ["/data/src/long.wav"],
        "other": ["/data/src/other.wav"],
    }
    matched, unmatched = resolve_val_list(entries, keys)
    assert matched == {"clip1", "clip2", "long_0000000000_0000320000", "long_0000320000_0000640000"}
    assert unmatched == ["nope"]
