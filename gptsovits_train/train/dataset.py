"""Training data: the cached spectrograms and HuBERT features of a prepared dataset, batched by length.

Nothing is computed from the audio per step: each item reads `spec/<id>.npy` (linear spectrogram),
`ssl/<id>.npy` (HuBERT features aligned to the spectrogram), the 32 kHz wav (the discriminator's real
audio) and the clip's phoneme ids from the manifest. The random 32-frame training segment is cut inside the
model (`GeneratorOutput.ids_slice`), as in the official trainer.

Batching follows the official `DistributedBucketSampler`:

- clips are grouped by spectrogram length into buckets `(b[i], b[i+1]]` of `train.bucket_boundaries`
  (official `[32, 300, 400, ..., 1900]` frames); clips of `<= b[0]` frames (0.64 s) or `> b[-1]` frames
  (38 s) are dropped (logged);
- every epoch shuffles each bucket with a generator seeded by (seed, epoch), pads each bucket with its own
  items to a multiple of `batch_size x world_size`, hands every rank its share, cuts batches and shuffles the
  batch order; all batches are full.

Tiny datasets: when the training split has fewer than `train.min_items_per_epoch` clips (default 100, as
official), one epoch visits every clip `ceil(min_items_per_epoch / n)` times, so an "epoch" stays a
meaningful amount of training (official: `max(2, int(100 / n))` repetitions). Validation never repeats.

The collate pads like the official one: ssl and spec to `2 * (max_frames // 2 + 1)` frames, wav to the
longest wav, phoneme ids with 0, and orders the batch by spectrogram length, longest first.

v2Pro/v2ProPlus (`with_sv=True`): each item also reads its speaker-verification feature `sv/<id>.npy`
(float32, upcast from float16 files), and the batch carries them as `Batch.sv_emb (B, sv_dim)` in the same
sorted order (official 9-tuple's last item), so the step hands `batch.sv_emb` to the generator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from gptsovits_train.config import AudioConfig
from gptsovits_train.data.manifest import Clip, read_manifest
from gptsovits_train.errors import GsvError
from gptsovits_train.features.extract import feature_problems, warn_if_random_features
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)

_SHOW = 5  # clip ids named per problem in error messages


# --------------------------------------------------------------------------------------------- records
@dataclass
class Sample:
    """One clip, ready for collation."""

    clip_id: str
    ssl: torch.Tensor  # (ssl_dim, T) float32
    spec: torch.Tensor  # (n_freq, T) float32, linear magnitude
    wav: torch.Tensor  # (1, L) float32 in [-1, 1], L >= T * hop
    phone_ids: torch.Tensor  # (Tt,) int64
    sv: torch.Tensor | None = None  # (sv_dim,) float32 speaker-verification feature (v2Pro/v2ProPlus)


@dataclass
class Batch:
    """A padded batch, longest spectrogram first (official collate layout)."""

    ssl: torch.Tensor  # (B, ssl_dim, Tp) float32, Tp = 2 * (max T // 2 + 1)
    ssl_lengths: torch.Tensor  # (B,) int64
    spec: torch.Tensor  # (B, n_freq, Tp) float32
    spec_lengths: torch.Tensor  # (B,) int64
    wav: torch.Tensor  # (B, 1, Lmax) float32
    wav_lengths: torch.Tensor  # (B,) int64
    text: torch.Tensor  # (B, Ttmax) int64, 0-padded
    text_lengths: torch.Tensor  # (B,) int64
    clip_ids: list[str] = field(default_factory=list)
    sv_emb: torch.Tensor | None = None  # (B, sv_dim) float32 (v2Pro/v2ProPlus), in the batch's order

    @property
    def size(self) -> int:
        return int(self.spec.shape[0])

    def _map(self, fn: object) -> Batch:
        assert callable(fn)
        return Batch(
            ssl=fn(self.ssl),
            ssl_lengths=fn(self.ssl_lengths),
            spec=fn(self.spec),
            spec_lengths=fn(self.spec_lengths),
            wav=fn(self.wav),
            wav_lengths=fn(self.wav_lengths),
            text=fn(self.text),
            text_lengths=fn(self.text_lengths),
            clip_ids=list(self.clip_ids),
            sv_emb=None if self.sv_emb is None else fn(self.sv_emb),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def piece(self, items: slice) -> Batch:
        """Items `items` of the batch, with the padding `collate` gives those items on their own.

        The batch is sorted longest first and `collate` keeps that order, so this is exactly
        `collate(those samples)` (tests check it): spectrogram/ssl padded to `2 * (max frames // 2 + 1)`,
        wav to the longest wav, phoneme ids to the longest text. Lengths are read on the host (one sync).
        """
        lengths = torch.stack(
            [
                x[items].max()
                for x in (self.spec_lengths, self.ssl_lengths, self.wav_lengths, self.text_lengths)
            ]
        ).tolist()
        frames, wav, text = max(lengths[0], lengths[1]), lengths[2], lengths[3]
        t_pad = 2 * (frames // 2 + 1)
        return Batch(
            ssl=self.ssl[items, :, :t_pad],
            ssl_lengths=self.ssl_lengths[items],
            spec=self.spec[items, :, :t_pad],
            spec_lengths=self.spec_lengths[items],
            wav=self.wav[items, :, :wav],
            wav_lengths=self.wav_lengths[items],
            text=self.text[items, :text],
            text_lengths=self.text_lengths[items],
            clip_ids=self.clip_ids[items],
            sv_emb=None if self.sv_emb is None else self.sv_emb[items],
        )

    def pin_memory(self) -> Batch:
        """Called by the DataLoader when `pin_memory=True`."""
        return self._map(lambda t: t.pin_memory())


# ---------------------------------------------------------------------------------------- dataset check
@dataclass
class DatasetSplits:
    """The usable clips of a prepared dataset, split for training."""

    root: DatasetLayout
    train: list[Clip]
    val: list[Clip]
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> clip ids


def _npy_shape(path: Path) -> tuple[int, ...]:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return tuple(int(s) for s in arr.shape)


def _problems_message(problems: dict[str, list[str]], n_total: int, root: Path) -> str:
    parts = []
    for what, items in problems.items():
        shown = ", ".join(items[:_SHOW]) + (
            f", ... (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
        )
        parts.append(f"{len(items)} {what}: {shown}")
    n_bad = len({i.split(" ")[0] for items in problems.values() for i in items})
    fixes = []
    if any("HuBERT" in w for w in problems):
        fixes.append("set prepare.features.hubert and run `gsv-train prepare` again to compute the features")
    if any("speaker-verification" in w for w in problems):
        fixes.append(
            "v2Pro/v2ProPlus need speaker-verification features: run `gsv-train prepare` again with "
            "--sv FILE (pretrained_eres2netv2w24s4ep4.ckpt, `gsv-train download-pretrained --version "
            "v2Pro`; it computes only what is missing); features made with `--sv random-tiny` are "
            "1280-d: set model.sv_dim: 1280 to train on them"
        )
    if any("phoneme" in w for w in problems):
        fixes.append(
            "give transcripts to `gsv-train prepare` (a .list file or metadata.csv) and run it again"
        )
    if any(("mismatch" in w or "missing" in w or "unreadable" in w) for w in problems):
        fixes.append("run `gsv-train prepare` again on the same sources to rebuild the damaged files")
    return (
        f"dataset {root}: {n_bad} of {n_total} clips are not ready for training ({'; '.join(parts)}). "
        f"To fix: {'; '.join(fixes)}."
    )


def check_clip_files(
    layout: DatasetLayout, clips: Sequence[Clip], audio: AudioConfig, ssl_dim: int, sv_dim: int | None = None
) -> dict[str, list[str]]:
    """Every reason a clip cannot be trained on: {problem: ["<id> (detail)", ...]} (empty when all is well).

    The dataset check `fit` runs: phonemes, wav, spectrogram and lengths here; the HuBERT features through
    `features.feature_problems`, the check `prepare` documents. Reads only the `.npy` headers (fast).
    `sv_dim`: v2Pro/v2ProPlus also need a speaker-verification feature `(sv_dim,)` per clip.
    """
    problems: dict[str, list[str]] = {}

    def add(what: str, item: str) -> None:
        problems.setdefault(what, []).append(item)

    for clip in clips:
        if not clip.phone_ids:
            add("clips without phoneme ids", clip.id)
        wav = layout.root / clip.path
        if not wav.is_file():
            add("clips with a missing wav", clip.id)
        spec_path = layout.root / clip.spec if clip.spec else layout.spec(clip.id)
        if not spec_path.is_file():
            add("clips with a missing spectrogram", clip.id)
            spec_shape = None
        else:
            try:
                spec_shape = _npy_shape(spec_path)
            except (ValueError, OSError) as exc:
                add("clips with an unreadable spectrogram", f"{clip.id} ({exc})")
                spec_shape = None
        if spec_shape is not None and spec_shape != (audio.n_freq, clip.n_frames):
            add(
                "clips with a spectrogram/manifest frame mismatch",
                f"{clip.id} (spec {spec_shape}, expected ({audio.n_freq}, {clip.n_frames}))",
            )
        if sv_dim is not None:
            _check_sv(layout, clip, sv_dim, add)
        if clip.n_samples < clip.n_frames * audio.hop_length:
            add(
                "clips with a wav/spectrogram length mismatch",
                f"{clip.id} ({clip.n_samples} samples < {clip.n_frames} frames x {audio.hop_length})",
            )
    for clip_id, reason in feature_problems(layout, list(clips), hidden_size=ssl_dim):
        add("clips without usable HuBERT features", f"{clip_id} ({reason})")
    return problems


def _no_val_reason(clips: Sequence[Clip], lo: int, hi: int) -> str:
    """Why a dataset has no usable validation clip, and what to do about it."""
    n_val = sum(c.split == "val" for c in clips)
    if n_val:
        return (
            f"its {n_val} validation clip(s) are all outside the length buckets ({lo} < frames <= {hi}); "
            "re-split with --val-list naming clips of usable length, or widen train.bucket_boundaries"
        )
    if len(clips) == 1:
        return (
            "it holds a single clip, which cannot be split into training and validation; fit needs at "
            "least one of each: add audio and run prepare again"
        )
    return (
        f"none of its {len(clips)} clips is marked split 'val' in the manifest; run prepare again "
        "(its seeded split always holds out at least one of two or more clips, or use --val-list)"
    )


def _check_sv(layout: DatasetLayout, clip: Clip, sv_dim: int, add: Callable[[str, str], None]) -> None:
    if clip.sv is None:
        add("clips without speaker-verification features", clip.id)
        return
    try:
        shape = _npy_shape(layout.root / clip.sv)
    except (ValueError, OSError) as exc:
        add("clips with missing or unreadable speaker-verification features", f"{clip.id} ({exc})")
        return
    if shape != (sv_dim,):
        add(
            "clips with speaker-verification features of the wrong size",
            f"{clip.id} (sv {shape}, expected ({sv_dim},))",
        )


def load_splits(
    dataset_dir: Path | str,
    audio: AudioConfig,
    *,
    ssl_dim: int = 768,
    sv_dim: int | None = None,
    boundaries: Sequence[int],
    max_val_clips: int | None = None,
) -> DatasetSplits:
    """Read and check a prepared dataset; drop clips outside the bucket range (logged).

    Raises:
        GsvError: no manifest; any clip lacks features/phonemes or has mismatched frame counts (the
            message names the clips and what to run); no training or no validation clip is left.
    """
    layout = DatasetLayout(Path(dataset_dir))
    if not layout.root.is_dir():
        raise GsvError(
            f"dataset folder not found: {layout.root} (set train.dataset to a `gsv-train prepare` output)"
        )
    clips = read_manifest(layout.manifest)
    if not clips:
        raise GsvError(f"dataset {layout.root}: the manifest lists no clips")
    problems = check_clip_files(layout, clips, audio, ssl_dim, sv_dim)
    if problems:
        raise GsvError(_problems_message(problems, len(clips), layout.root))
    warn_if_random_features(layout)

    lo, hi = boundaries[0], boundaries[-1]
    dropped: dict[str, list[str]] = {}
    train: list[Clip] = []
    val: list[Clip] = []
    for clip in clips:
        if clip.n_frames <= lo:
            dropped.setdefault(f"<= {lo} frames", []).append(clip.id)
        elif clip.n_frames > hi:
            dropped.setdefault(f"> {hi} frames", []).append(clip.id)
        elif clip.split == "val":
            val.append(clip)
        else:
            train.append(clip)
    for reason, ids in dropped.items():
        LOG.warning(
            "dropped %d clip(s) with spectrograms %s (outside the length buckets): %s",
            len(ids),
            reason,
            ", ".join(ids[:_SHOW]) + (" ..." if len(ids) > _SHOW else ""),
        )
    if not train:
        raise GsvError(f"dataset {layout.root}: no training clip within {lo} < frames <= {hi}")
    if not val:
        raise GsvError(f"dataset {layout.root}: {_no_val_reason(clips, lo, hi)}")
    if max_val_clips is not None and len(val) > max_val_clips:
        LOG.info(
            "validation limited to the first %d of %d clips (train.val_max_clips)", max_val_clips, len(val)
        )
        val = val[:max_val_clips]
    return DatasetSplits(root=layout, train=train, val=val, dropped=dropped)


# ---------------------------------------------------------------------------------------------- dataset
class SoVITSDataset(Dataset[Sample]):
    """Clips of a prepared dataset as `Sample`s (reads the cached files; no STFT)."""

    def __init__(
        self, layout: DatasetLayout, clips: Sequence[Clip], audio: AudioConfig, *, with_sv: bool = False
    ) -> None:
        self.layout = layout
        self.clips = list(clips)
        self.audio = audio
        self.with_sv = with_sv  # v2Pro/v2ProPlus: also read sv/<id>.npy (checked by load_splits)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def lengths(self) -> list[int]:
        """Spectrogram frames per clip (what the bucket sampler sorts on)."""
        return [c.n_frames for c in self.clips]

    def __getitem__(self, index: int) -> Sample:
        clip = self.clips[index]
        root = self.layout.root
        spec = np.load(
            root / (clip.spec or self.layout.relative(self.layout.spec(clip.id))), allow_pickle=False
        )
        assert clip.ssl is not None and clip.phone_ids is not None  # checked by load_splits
        ssl = np.load(root / clip.ssl, allow_pickle=False)
        wav, sr = sf.read(root / clip.path, dtype="float32", always_2d=True)
        if sr != self.audio.sampling_rate:
            raise GsvError(f"{root / clip.path}: sample rate {sr} Hz, expected {self.audio.sampling_rate} Hz")
        sv = None
        if self.with_sv:
            assert clip.sv is not None  # checked by load_splits
            # float16 files (official GPU output) are upcast to float32, as the official collate does
            sv = torch.from_numpy(np.load(root / clip.sv, allow_pickle=False).astype(np.float32))
        return Sample(
            clip_id=clip.id,
            ssl=torch.from_numpy(ssl.astype(np.float32)),
            spec=torch.from_numpy(spec.astype(np.float32)),
            wav=torch.from_numpy(np.ascontiguousarray(wav[:, 0])).unsqueeze(0),
            phone_ids=torch.tensor(clip.phone_ids, dtype=torch.long),
            sv=sv,
        )


def collate(samples: Sequence[Sample]) -> Batch:
    """Pad a list of samples into a `Batch` (official padding rules, longest spectrogram first)."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    order = sorted(range(len(samples)), key=lambda i: samples[i].spec.shape[1], reverse=True)
    samples = [samples[i] for i in order]
    n = len(samples)
    max_frames = max(max(s.spec.shape[1], s.ssl.shape[1]) for s in samples)
    t_pad = 2 * (max_frames // 2 + 1)
    l_max = max(s.wav.shape[1] for s in samples)
    tt_max = max(s.phone_ids.shape[0] for s in samples)
    ssl = torch.zeros(n, samples[0].ssl.shape[0], t_pad)
    spec = torch.zeros(n, samples[0].spec.shape[0], t_pad)
    wav = torch.zeros(n, 1, l_max)
    text = torch.zeros(n, tt_max, dtype=torch.long)
    ssl_len = torch.zeros(n, dtype=torch.long)
    spec_len = torch.zeros(n, dtype=torch.long)
    wav_len = torch.zeros(n, dtype=torch.long)
    text_len = torch.zeros(n, dtype=torch.long)
    for i, s in enumerate(samples):
        ssl[i, :, : s.ssl.shape[1]] = s.ssl
        spec[i, :, : s.spec.shape[1]] = s.spec
        wav[i, :, : s.wav.shape[1]] = s.wav
        text[i, : s.phone_ids.shape[0]] = s.phone_ids
        ssl_len[i], spec_len[i], wav_len[i] = s.ssl.shape[1], s.spec.shape[1], s.wav.shape[1]
        text_len[i] = s.phone_ids.shape[0]
    with_sv = [s.sv is not None for s in samples]
    if any(with_sv) and not all(with_sv):
        raise ValueError("cannot collate samples with and without speaker-verification features")
    sv_emb = torch.stack([s.sv for s in samples if s.sv is not None]) if all(with_sv) else None
    return Batch(
        ssl,
        ssl_len,
        spec,
        spec_len,
        wav,
        wav_len,
        text,
        text_len,
        [s.clip_id for s in samples],
        sv_emb=sv_emb,
    )


# ---------------------------------------------------------------------------------------------- sampler
def repeats_for(n_items: int, min_items: int) -> int:
    """How many times an epoch visits each training clip so that it holds at least `min_items` items."""
    if n_items <= 0:
        raise ValueError("no items")
    return 1 if n_items >= min_items else math.ceil(min_items / n_items)


class LengthBucketBatchSampler:
    """Batches of similar spectrogram length, distributed-capable (official `DistributedBucketSampler`).

    Args:
        lengths: spectrogram frames of each dataset item.
        batch_size: items per batch (per rank).
        boundaries: bucket edges; bucket i holds lengths in `(b[i], b[i+1]]`; others are left out.
        num_replicas, rank: DDP world size and this process's rank.
        shuffle: shuffle inside buckets and the batch order (seeded by `seed + epoch`).
        repeats: each item appears this many times per epoch (tiny datasets).
        seed: base seed of the per-epoch shuffle.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        boundaries: Sequence[int],
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        repeats: int = 1,
        seed: int = 1234,
    ) -> None:
        if batch_size < 1 or repeats < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError("need batch_size >= 1, repeats >= 1 and 0 <= rank < num_replicas")
        if list(boundaries) != sorted(set(boundaries)) or len(boundaries) < 2:
            raise ValueError(
                f"bucket boundaries must be at least 2 strictly increasing numbers, got {boundaries}"
            )
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.repeats = repeats
        self.epoch = 0
        self.start_batch = 0
        buckets: list[list[int]] = [[] for _ in range(len(boundaries) - 1)]
        for _ in range(repeats):
            for idx, length in enumerate(lengths):
                b = self.bucket_of(length, boundaries)
                if b is not None:
                    buckets[b].append(idx)
        self.buckets = [b for b in buckets if b]
        if not self.buckets:
            raise ValueError("no item falls inside the bucket boundaries")
        per_step = batch_size * num_replicas
        self.bucket_sizes = [len(b) + (-len(b)) % per_step for b in self.buckets]  # padded to full batches
        self.num_batches = sum(self.bucket_sizes) // per_step

    @staticmethod
    def bucket_of(length: int, boundaries: Sequence[int]) -> int | None:
        for i in range(len(boundaries) - 1):
            if boundaries[i] < length <= boundaries[i + 1]:
                return i
        return None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's shuffle; `start_batch` skips the first batches (mid-epoch resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch for this rank (before `start_batch` is applied)."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        out: list[list[int]] = []
        for bucket, padded in zip(self.buckets, self.bucket_sizes, strict=True):
            order = (
                torch.randperm(len(bucket), generator=g).tolist()
                if self.shuffle
                else list(range(len(bucket)))
            )
            # Pad with the bucket's own items (cycling) so every batch on every rank is full.
            order = [order[i % len(order)] for i in range(padded)]
            mine = order[self.rank :: self.num_replicas]
            for j in range(0, len(mine), self.batch_size):
                out.append([bucket[k] for k in mine[j : j + self.batch_size]])
        if self.shuffle:
            perm = torch.randperm(len(out), generator=g).tolist()
            out = [out[i] for i in perm]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start_batch :])

    def __len__(self) -> int:
        return self.num_batches - self.start_batch


# ----------------------------------------------------------------------------------------------- loaders
def train_loader(
    dataset: SoVITSDataset,
    sampler: LengthBucketBatchSampler,
    *,
    num_workers: int,
    pin_memory: bool,
    seed: int,
    worker_init_fn: Callable[[int], None] | None = None,
) -> DataLoader[Sample]:
    """The training DataLoader.

    It gets its own seeded generator, so creating its iterator leaves the global torch RNG untouched (needed
    for a bit-exact resume).
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=3 if num_workers > 0 else None,
        generator=generator,
        worker_init_fn=worker_init_fn,
    )


def val_indices(n_clips: int, rank: int, world_size: int) -> list[int]:
    """The validation clips this rank evaluates (a fixed round-robin shard)."""
    return list(range(rank, n_clips, world_size))
