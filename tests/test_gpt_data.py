"""GPT data: official collate, filters, sampler and epoch size (against the official fixture), and the
GPT view of a prepared dataset (semantic/<id>.npy, bert/<id>.npy, manifest fields)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gptsovits_train.data.manifest import Clip, write_manifest
from gptsovits_train.errors import GsvError
from gptsovits_train.train.gpt_data import (
    GptDataset,
    GptItem,
    OfficialBucketSampler,
    gpt_collate,
    load_gpt_splits,
    official_batch_size,
    official_filter_reason,
    official_repeats,
)
from tests.t2s_helpers import fixture_batch, load_fixture


@pytest.fixture(scope="module")
def fx(reference_dir: Path) -> dict[str, Any]:
    return load_fixture(reference_dir)


def _item(fx: dict[str, Any], name: str) -> GptItem:
    inputs = fx["inputs"]
    bert = inputs.get(f"items/{name}/bert_file")
    return GptItem(
        name,
        inputs[f"items/{name}/phoneme_ids"],
        inputs[f"items/{name}/semantic_ids"],
        bert.float() if bert is not None else None,
    )


def test_collate_equals_official_batch(fx: dict[str, Any]) -> None:
    batch = gpt_collate([_item(fx, n) for n in fx["meta"]["batch"]["names"]])
    ref = fixture_batch(fx)
    assert torch.equal(batch.phoneme_ids, ref["phoneme_ids"])
    assert torch.equal(batch.phoneme_lens, ref["phoneme_ids_len"])
    assert torch.equal(batch.semantic_ids, ref["semantic_ids"])
    assert torch.equal(batch.semantic_lens, ref["semantic_ids_len"])
    assert torch.equal(batch.bert, ref["bert_feature"])
    assert batch.clip_ids == ["b_en.wav", "a_zh.wav", "c_zh.wav"]


def test_filters_match_every_official_candidate(fx: dict[str, Any]) -> None:
    """The fixture ran the official dataset on 12 candidates; compare the length-based outcomes."""
    candidates = fx["meta"]["dataset"]["candidates"]
    checked = 0
    for name, c in candidates.items():
        expected = c["expected"]
        if not expected.startswith(("kept", "dropped")):
            continue  # missing text / bad line: official-file layout problems, not length filters
        reason = official_filter_reason(c["codes"], c["phones"])
        assert (reason is None) == expected.startswith("kept"), (name, expected, reason)
        checked += 1
    assert checked == 9
    assert set(fx["meta"]["dataset"]["kept_in_tsv_order"]) == {
        n for n, c in candidates.items() if c["expected"].startswith("kept")
    }


def test_epoch_size_rule_and_batch_cap() -> None:
    # official: fewer than 100 items -> the list is repeated max(2, int(100/n)) times (facts §4)
    assert [official_repeats(n) for n in (1, 3, 5, 40, 60, 99, 100, 250)] == [100, 33, 20, 2, 2, 2, 1, 1]
    assert 3 * official_repeats(3) == 99 and 5 * official_repeats(5) == 100
    # batch = max(min(batch, len//4), 1) (facts §5): 100 items, batch 25 -> exactly 4 batches
    assert official_batch_size(25, 100) == 25
    assert official_batch_size(8, 20) == 5
    assert official_batch_size(8, 3) == 1


def test_sampler_reproduces_the_official_epoch_orders(fx: dict[str, Any]) -> None:
    meta = fx["meta"]
    kept = meta["dataset"]["kept_in_tsv_order"]
    codes = {n: fx["meta"]["dataset"]["candidates"][n]["codes"] for n in kept}
    seconds = [codes[n] / 25 for n in kept]
    repeats = official_repeats(len(kept))
    batch = official_batch_size(8, len(kept) * repeats)
    assert batch == meta["sampler"]["train_batch_size_from_8"]
    sampler = OfficialBucketSampler(seconds, batch, repeats=repeats, seed=0)
    assert [len(b) for b in sampler.buckets] == meta["sampler"]["bucket_lengths"]
    assert sampler.indices() == meta["sampler"]["epoch0_indices"]
    sampler.set_epoch(1)
    assert sampler.indices() == meta["sampler"]["epoch1_indices"]
    batches = sampler.batches()
    assert len(batches) == len(sampler) == 13 and [len(b) for b in batches][-1] == 4
    assert batches[0] == [i % 5 for i in meta["sampler"]["epoch1_indices"][:8]]
    sampler.set_epoch(1, start_batch=3)
    assert list(sampler) == batches[3:] and len(sampler) == 10


def test_sampler_shards_across_ranks() -> None:
    seconds = [1.0 + 0.1 * i for i in range(10)]
    parts = [OfficialBucketSampler(seconds, 2, num_replicas=3, rank=r, seed=0).indices() for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # 10 padded to 12
    assert set(parts[0]) | set(parts[1]) | set(parts[2]) == set(range(10))


# ------------------------------------------------------------------------------ prepared dataset view
def _clip(cid: str, split: str, phones: int, **kw: Any) -> Clip:
    return Clip(
        id=cid,
        path=f"wavs/{cid}.wav",
        source="src.wav",
        start=0.0,
        end=1.0,
        duration=1.0,
        text="x",
        language=kw.pop("language", "en"),
        speaker="s",
        split=split,  # type: ignore[arg-type]
        phone_ids=list(range(1, phones + 1)) if phones else None,
        **kw,
    )


def make_gpt_dataset(root: Path, clips: list[tuple[str, str, int, int, str]]) -> Path:
    """(id, split, n_phones, n_codes, bert: "zh" | "none" | "bad") → a prepared-dataset folder."""
    (root / "semantic").mkdir(parents=True, exist_ok=True)
    (root / "bert").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for cid, split, n_ph, n_codes, bert in clips:
        sem = None
        if n_codes >= 0:
            np.save(root / "semantic" / f"{cid}.npy", rng.integers(0, 1024, n_codes).astype(np.int64))
            sem = f"semantic/{cid}.npy"
        b = None
        if bert != "none":
            width = n_ph if bert == "zh" else n_ph + 1
            np.save(root / "bert" / f"{cid}.npy", rng.standard_normal((1024, width)).astype(np.float16))
            b = f"bert/{cid}.npy"
        out.append(_clip(cid, split, n_ph, semantic=sem, bert=b, language="zh" if b else "en"))
    write_manifest(root / "manifest.jsonl", out)
    return root


def test_gpt_view_reports_every_left_out_clip(tmp_path: Path) -> None:
    root = make_gpt_dataset(
        tmp_path / "ds",
        [
            ("zh1", "train", 12, 40, "zh"),
            ("en1", "train", 10, 30, "none"),
            ("fast", "train", 30, 25, "none"),  # 30 phones/s
            ("nosem", "train", 10, -1, "none"),
            ("badbert", "train", 10, 30, "bad"),
            ("nophones", "train", 0, 30, "none"),
            ("v1", "val", 8, 25, "none"),
        ],
    )
    splits = load_gpt_splits(root)
    assert [c.clip_id for c in splits.train] == ["zh1", "en1"]
    assert [c.clip_id for c in splits.val] == ["v1"]
    flat = {item.split(" ")[0]: reason for reason, items in splits.filtered.items() for item in items}
    assert set(flat) == {"fast", "nosem", "badbert", "nophones"}
    assert flat["fast"] == "official GPT dataset filter"
    assert "30.00 phones/s > 25" in splits.filtered["official GPT dataset filter"][0]
    assert flat["badbert"] == "BERT features do not match the phones"
    assert json.dumps(splits.report())  # JSON-ready
    ds = GptDataset(splits.train)
    zh = ds[0]
    assert zh.bert is not None and zh.bert.dtype == torch.float32 and zh.bert.shape == (1024, 12)
    assert zh.codes.dtype == torch.int64 and zh.codes.shape == (40,)
    assert ds[1].bert is None
    batch = gpt_collate([ds[0], ds[1]])
    assert torch.equal(batch.bert[1], torch.zeros(1024, 12))  # no BERT -> zeros, as official


def test_no_validation_clip_left_is_an_error(tmp_path: Path) -> None:
    root = make_gpt_dataset(tmp_path / "ds", [("a", "train", 10, 30, "none"), ("v", "val", 40, 25, "none")])
    with pytest.raises(GsvError, match="no validation clip left for the GPT stage"):
        load_gpt_splits(root)
