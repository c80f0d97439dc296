"""Training dataset: checks, loading, official collate padding, length-bucketed (distributed) batches."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from gptsovits_train.config import AudioConfig, TrainConfig
from gptsovits_train.data.manifest import read_manifest, write_manifest
from gptsovits_train.errors import GsvError
from gptsovits_train.features import RANDOM_TINY
from gptsovits_train.features.extract import FeatureStamp
from gptsovits_train.train.dataset import (
    LengthBucketBatchSampler,
    Sample,
    SoVITSDataset,
    collate,
    load_splits,
    repeats_for,
    train_loader,
    val_indices,
)
from tests.fit_helpers import make_dataset

AUDIO = AudioConfig()
BOUNDARIES = TrainConfig().bucket_boundaries


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # clip lengths (s): two <= 0.64 s (<= 32 frames, dropped), the rest 1-3 s
    seconds = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 1.2, 0.6, 1.8, 2.2]
    return make_dataset(tmp_path_factory.mktemp("ds"), n_train=8, n_val=2, seconds=seconds)


def test_load_splits_drops_short_clips_and_splits(dataset):
    splits = load_splits(dataset.root, AUDIO, boundaries=BOUNDARIES)
    frames = {c.id: c.n_frames for c in read_manifest(dataset.manifest)}
    short = sorted(i for i, f in frames.items() if f <= 32)
    assert len(short) == 2  # 0.5 s = 25 frames and 0.6 s = 30 frames
    assert sorted(splits.dropped["<= 32 frames"]) == short
    assert len(splits.train) == 6 and len(splits.val) == 2
    assert all(c.split == "val" for c in splits.val)
    assert all(32 < c.n_frames <= 1900 for c in splits.train + splits.val)


def test_refuses_clips_without_features(tmp_path):
    layout = make_dataset(tmp_path, n_train=3, n_val=1)
    clips = read_manifest(layout.manifest)
    clips[1] = dataclasses.replace(clips[1], ssl=None)
    clips[2] = dataclasses.replace(clips[2], ssl=None)
    write_manifest(layout.manifest, clips)
    with pytest.raises(GsvError) as err:
        load_splits(layout.root, AUDIO, boundaries=BOUNDARIES)
    msg = str(err.value)
    assert "2 of 4 clips" in msg
    assert clips[1].id in msg and clips[2].id in msg
    assert "prepare.features.hubert" in msg and "gsv-train prepare" in msg


def test_refuses_frame_mismatch_and_missing_phonemes(tmp_path):
    layout = make_dataset(tmp_path, n_train=3, n_val=1)
    clips = read_manifest(layout.manifest)
    bad_ssl = np.zeros((768, clips[0].n_frames - 3), dtype=np.float16)
    np.save(layout.root / clips[0].ssl, bad_ssl)
    clips[3] = dataclasses.replace(clips[3], phone_ids=None)
    write_manifest(layout.manifest, clips)
    with pytest.raises(GsvError) as err:
        load_splits(layout.root, AUDIO, boundaries=BOUNDARIES)
    msg = str(err.value)
    # the feature problem comes from the one feature check (`features.feature_problems`), as in prepare
    n = clips[0].n_frames
    assert f"{clips[0].id} (features have {n - 3} frames, the spectrogram has {n})" in msg
    assert "phoneme" in msg and clips[3].id in msg


def test_random_hubert_features_warning_reaches_fit(tmp_path, caplog):
    layout = make_dataset(tmp_path, n_train=3, n_val=1)
    load_splits(layout.root, AUDIO, boundaries=BOUNDARIES)
    assert "RANDOM HuBERT" not in caplog.text
    layout.features_stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp = FeatureStamp(model=RANDOM_TINY, digest="0" * 64, random=True, hidden_size=768)
    layout.features_stamp.write_text(json.dumps(stamp.to_dict()))
    with caplog.at_level(logging.WARNING):
        load_splits(layout.root, AUDIO, boundaries=BOUNDARIES)
    assert "features come from a RANDOM HuBERT" in caplog.text


def test_refuses_dataset_without_validation_clips(tmp_path):
    layout = make_dataset(tmp_path, n_train=3, n_val=0)
    with pytest.raises(GsvError, match="no validation clip"):
        load_splits(layout.root, AUDIO, boundaries=BOUNDARIES)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(GsvError, match="dataset folder not found"):
        load_splits(tmp_path / "nope", AUDIO, boundaries=BOUNDARIES)


def test_sample_reads_cached_files(dataset):
    splits = load_splits(dataset.root, AUDIO, boundaries=BOUNDARIES)
    ds = SoVITSDataset(dataset, splits.train, AUDIO)
    clip = splits.train[0]
    s = ds[0]
    assert s.clip_id == clip.id
    np.testing.assert_array_equal(s.spec.numpy(), np.load(dataset.root / clip.spec).astype(np.float32))
    np.testing.assert_array_equal(s.ssl.numpy(), np.load(dataset.root / clip.ssl).astype(np.float32))
    pcm, _ = sf.read(dataset.root / clip.path, dtype="int16")
    np.testing.assert_array_equal(s.wav.numpy()[0], pcm.astype(np.float32) / 32768.0)
    assert s.phone_ids.tolist() == clip.phone_ids
    assert s.spec.shape == (1025, clip.n_frames) and s.ssl.shape == (768, clip.n_frames)


def _sample(frames: int, n_text: int, fill: float) -> Sample:
    return Sample(
        clip_id=f"c{frames}",
        ssl=torch.full((4, frames), fill),
        spec=torch.full((3, frames), fill),
        wav=torch.full((1, frames * 10 + 5), fill),
        phone_ids=torch.arange(1, n_text + 1),
    )


def test_collate_official_padding_and_order():
    batch = collate([_sample(40, 5, 1.0), _sample(75, 3, 2.0), _sample(51, 9, 3.0)])
    # 2 * (75 // 2 + 1) = 76 frames; sorted by spectrogram length, longest first
    assert batch.spec.shape == (3, 3, 76) and batch.ssl.shape == (3, 4, 76)
    assert batch.spec_lengths.tolist() == [75, 51, 40] == batch.ssl_lengths.tolist()
    assert batch.clip_ids == ["c75", "c51", "c40"]
    assert batch.wav.shape == (3, 1, 755) and batch.wav_lengths.tolist() == [755, 515, 405]
    assert batch.text.shape == (3, 9) and batch.text_lengths.tolist() == [3, 9, 5]
    assert batch.text[0].tolist() == [1, 2, 3, 0, 0, 0, 0, 0, 0]
    assert torch.all(batch.spec[0, :, :75] == 2.0) and torch.all(batch.spec[0, :, 75:] == 0)
    assert torch.all(batch.spec[2, :, :40] == 1.0) and torch.all(batch.spec[2, :, 40:] == 0)
    even = collate([_sample(74, 2, 1.0)])
    assert even.spec.shape[-1] == 76  # 2 * (74 // 2 + 1): even lengths gain 2 frames, as official


@pytest.mark.parametrize(
    ("n", "min_items", "expected"), [(11, 100, 10), (100, 100, 1), (60, 100, 2), (1, 3, 3)]
)
def test_repeats_for(n, min_items, expected):
    assert repeats_for(n, min_items) == expected
    assert n * repeats_for(n, min_items) >= min_items


def _bucket(length, boundaries=BOUNDARIES):
    return LengthBucketBatchSampler.bucket_of(length, boundaries)


def test_bucket_sampler_full_batches_same_bucket_every_item():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 2100, size=300).tolist()
    sampler = LengthBucketBatchSampler(lengths, 8, BOUNDARIES, seed=1)
    sampler.set_epoch(1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert all(len(b) == 8 for b in batches)
    for b in batches:
        assert len({_bucket(lengths[i]) for i in b}) == 1
    used = {i for b in batches for i in b}
    inside = {i for i, n in enumerate(lengths) if 32 < n <= 1900}
    assert used == inside  # every in-range item, and nothing outside the boundaries
    counts = Counter(i for b in batches for i in b)
    assert max(counts.values()) <= 2  # padding repeats a few items of small buckets


def test_bucket_sampler_deterministic_per_epoch():
    lengths = list(range(40, 440, 4))
    s = LengthBucketBatchSampler(lengths, 4, BOUNDARIES, seed=7)
    s.set_epoch(3)
    a = list(s)
    s.set_epoch(4)
    b = list(s)
    s.set_epoch(3)
    assert list(s) == a and a != b
    s.set_epoch(3, start_batch=5)
    assert list(s) == a[5:] and len(s) == len(a) - 5


def test_bucket_sampler_distributed_shards():
    lengths = list(range(40, 640, 3))
    one = LengthBucketBatchSampler(lengths, 4, BOUNDARIES, num_replicas=2, rank=0, seed=3)
    two = LengthBucketBatchSampler(lengths, 4, BOUNDARIES, num_replicas=2, rank=1, seed=3)
    for s in (one, two):
        s.set_epoch(2)
    b0, b1 = list(one), list(two)
    assert len(b0) == len(b1) == len(one)  # every rank runs the same number of steps
    all_items = Counter(i for b in b0 + b1 for i in b)
    assert set(all_items) == set(range(len(lengths)))
    assert sum(all_items.values()) == sum(one.bucket_sizes)


def test_bucket_sampler_tiny_dataset_repeats():
    lengths = [50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]
    s = LengthBucketBatchSampler(lengths, 4, BOUNDARIES, repeats=repeats_for(11, 100))
    s.set_epoch(1)
    counts = Counter(i for b in s for i in b)
    assert sum(counts.values()) == 112  # 110 items padded to a multiple of 4
    assert min(counts.values()) >= 10


def test_val_indices_shard_everything_once():
    shards = [val_indices(7, r, 3) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))


def test_train_loader_yields_batches_and_leaves_global_rng_alone(dataset):
    splits = load_splits(dataset.root, AUDIO, boundaries=BOUNDARIES)
    ds = SoVITSDataset(dataset, splits.train, AUDIO)
    sampler = LengthBucketBatchSampler(ds.lengths, 2, BOUNDARIES, repeats=2)
    sampler.set_epoch(1)
    before = torch.get_rng_state()
    loader = train_loader(ds, sampler, num_workers=0, pin_memory=False, seed=5)
    batches = list(loader)
    assert torch.equal(torch.get_rng_state(), before)
    assert len(batches) == len(sampler) == 6
    for batch in batches:
        assert batch.size == 2 and batch.spec.shape[1] == 1025 and batch.ssl.shape[1] == 768
        assert batch.spec.shape[-1] == 2 * (int(batch.spec_lengths.max()) // 2 + 1)
        assert batch.wav.shape[-1] >= int(batch.spec_lengths.max()) * 640
