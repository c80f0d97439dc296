"""GPT (s1) training data: the GPT view of a prepared dataset, the official collate, sampler and epoch size.

Per clip the GPT reads, from the manifest and the dataset folder:

- ``phone_ids`` (manifest) — the phoneme ids;
- ``semantic`` → ``semantic/<id>.npy``: 25 Hz codes, 1-D integers;
- ``bert`` → ``bert/<id>.npy``: ``(1024, n_phones)`` float16 for zh clips; null → zeros (as official).

The official dataset filters (facts §4) decide which clips the GPT sees; every clip left out is
reported with its reason (`GptSplits.filtered`), never dropped silently:

1. more than ``max_sec·25`` codes (1350 at the official ``max_sec`` 54);
2. more than ``max_sec·25/2.5`` phones (540);
3. phones per second of codes outside ``[3, 25]`` (both bounds kept).

Clips the official loader would crash or skip on (no phonemes, no codes file, a BERT file whose width
differs from the phone count) are reported the same way.

Epoch size (official ``Text2SemanticDataset``): with fewer than ``min_items_per_epoch`` (100) training
clips the list is visited ``max(2, int(100 / n))`` times per epoch. Here that lives in the sampler, not
in the data; validation never repeats. Batches follow the official ``DistributedBucketSampler``
(`OfficialBucketSampler`), the batch size the official cap ``max(min(batch, n_items // 4), 1)``.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gptsovits_train.data.manifest import Clip, read_manifest
from gptsovits_train.errors import GsvError
from gptsovits_train.layout import DatasetLayout
from gptsovits_train.models.t2s.decoder import BERT_DIM

LOG = logging.getLogger(__name__)

CODES_HZ = 25
OFFICIAL_MAX_SEC = 54
OFFICIAL_PAD_VAL = 1024
MIN_PHONES_PER_SEC = 3.0
MAX_PHONES_PER_SEC = 25.0
_SHOW = 5


# ----------------------------------------------------------------------------------------------- filters
def official_filter_reason(n_codes: int, n_phones: int, max_sec: float = OFFICIAL_MAX_SEC) -> str | None:
    """Why the official dataset would drop a clip with these lengths, or None when it keeps it.

    The checks run in the official order (codes length, phone count, phones per second).
    """
    max_codes = max_sec * CODES_HZ
    if n_codes > max_codes:
        return f"{n_codes} semantic codes > max_sec·25 = {max_codes:g}"
    max_phones = max_sec * CODES_HZ / 2.5
    if n_phones > max_phones:
        return f"{n_phones} phones > max_sec·25/2.5 = {max_phones:g}"
    if n_codes == 0:
        return "no semantic codes (an empty clip)"
    rate = n_phones / (n_codes / CODES_HZ)
    if rate > MAX_PHONES_PER_SEC:
        return f"{rate:.2f} phones/s > {MAX_PHONES_PER_SEC:g}"
    if rate < MIN_PHONES_PER_SEC:
        return f"{rate:.2f} phones/s < {MIN_PHONES_PER_SEC:g}"
    return None


def official_repeats(n_items: int, min_items: int = 100) -> int:
    """Official epoch size: fewer than `min_items` clips → the list is visited `max(2, int(min/n))` times."""
    if n_items <= 0:
        raise ValueError("no items")
    return max(2, int(min_items / n_items)) if n_items < min_items else 1


def official_batch_size(batch_size: int, n_epoch_items: int) -> int:
    """The official cap `max(min(batch_size, n_epoch_items // 4), 1)` (epoch items, repeats included)."""
    return max(min(batch_size, n_epoch_items // 4), 1)


# ---------------------------------------------------------------------------------------------- records
@dataclass
class GptClip:
    """A clip of the GPT view: ids, number of codes, and where its files are."""

    clip_id: str
    phone_ids: list[int]
    n_codes: int
    semantic_path: Path
    bert_path: Path | None


@dataclass
class GptItem:
    """One loaded clip. `phone_ids (Tx,)` int64, `codes (Ty,)` int64, `bert (1024, Tx)` fp32 or None."""

    clip_id: str
    phone_ids: torch.Tensor
    codes: torch.Tensor
    bert: torch.Tensor | None


@dataclass
class GptBatch:
    """Official collate layout (order kept, no sorting).

    `phoneme_ids (B, Tx)` int64 right-padded with 0, `phoneme_lens (B,)`, `semantic_ids (B, Ty)` int64
    right-padded with `pad_val`, `semantic_lens (B,)`, `bert (B, 1024, Tx)` fp32 (zeros where a clip has
    no BERT file and at padded positions).
    """

    phoneme_ids: torch.Tensor
    phoneme_lens: torch.Tensor
    semantic_ids: torch.Tensor
    semantic_lens: torch.Tensor
    bert: torch.Tensor
    clip_ids: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.phoneme_ids.shape[0])

    def piece(self, items: slice) -> GptBatch:
        """Items `items` of the batch with the padding `gpt_collate` gives those items on their own
        (exactly `gpt_collate` of them: it keeps the order; tests check it). One host read of lengths."""
        tx, ty = torch.stack([self.phoneme_lens[items].max(), self.semantic_lens[items].max()]).tolist()
        return GptBatch(
            self.phoneme_ids[items, :tx],
            self.phoneme_lens[items],
            self.semantic_ids[items, :ty],
            self.semantic_lens[items],
            self.bert[items, :, :tx],
            self.clip_ids[items],
        )

    def to(self, device: torch.device | str) -> GptBatch:
        return GptBatch(
            self.phoneme_ids.to(device),
            self.phoneme_lens.to(device),
            self.semantic_ids.to(device),
            self.semantic_lens.to(device),
            self.bert.to(device),
            list(self.clip_ids),
        )


def gpt_collate(items: Sequence[GptItem], pad_val: int = OFFICIAL_PAD_VAL) -> GptBatch:
    """The official collate (see `GptBatch`)."""
    b = len(items)
    tx = max(int(it.phone_ids.numel()) for it in items)
    ty = max(int(it.codes.numel()) for it in items)
    phones = torch.zeros(b, tx, dtype=torch.long)
    codes = torch.full((b, ty), pad_val, dtype=torch.long)
    bert = torch.zeros(b, BERT_DIM, tx)
    for i, it in enumerate(items):
        phones[i, : it.phone_ids.numel()] = it.phone_ids
        codes[i, : it.codes.numel()] = it.codes
        if it.bert is not None:
            bert[i, :, : it.bert.shape[1]] = it.bert
    return GptBatch(
        phones,
        torch.tensor([it.phone_ids.numel() for it in items], dtype=torch.long),
        codes,
        torch.tensor([it.codes.numel() for it in items], dtype=torch.long),
        bert,
        [it.clip_id for it in items],
    )


# ------------------------------------------------------------------------------------------ GPT view
@dataclass
class GptSplits:
    """The GPT view: `train`/`val` clips kept, `filtered`: reason → ["<id> (detail)", ...]."""

    root: DatasetLayout
    train: list[GptClip]
    val: list[GptClip]
    filtered: dict[str, list[str]] = field(default_factory=dict)

    def report(self) -> dict[str, object]:
        """JSON-ready summary (kept counts and every filtered clip with its reason)."""
        return {
            "train_clips": len(self.train),
            "val_clips": len(self.val),
            "filtered_clips": sum(len(v) for v in self.filtered.values()),
            "filtered": self.filtered,
        }


def _npy_shape(path: Path) -> tuple[int, ...]:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return tuple(int(s) for s in arr.shape)


def _clip_view(layout: DatasetLayout, clip: Clip, max_sec: float) -> tuple[GptClip | None, str, str]:
    """(clip or None, reason, detail) for one manifest clip."""
    if not clip.phone_ids:
        return None, "no phonemes", ""
    if clip.semantic is None:
        return None, "no semantic codes (prepare the dataset with prepare.stages [sovits, gpt])", ""
    sem = layout.root / clip.semantic
    try:
        shape = _npy_shape(sem)
    except (OSError, ValueError) as exc:
        return None, "unreadable semantic codes file", f"{sem.name}: {exc}"
    if len(shape) != 1:
        return None, "semantic codes file is not 1-D", f"shape {shape}"
    n_phones = len(clip.phone_ids)
    bert_path = None
    if clip.bert is not None:
        bert_path = layout.root / clip.bert
        try:
            bshape = _npy_shape(bert_path)
        except (OSError, ValueError) as exc:
            return None, "unreadable BERT features file", f"{bert_path.name}: {exc}"
        if bshape != (BERT_DIM, n_phones):
            return None, "BERT features do not match the phones", f"shape {bshape}, phones {n_phones}"
    reason = official_filter_reason(shape[0], n_phones, max_sec)
    if reason is not None:
        return None, "official GPT dataset filter", reason
    return GptClip(clip.id, list(clip.phone_ids), shape[0], sem, bert_path), "", ""


def load_gpt_splits(dataset_dir: Path | str, *, max_sec: float = OFFICIAL_MAX_SEC) -> GptSplits:
    """The GPT view of a prepared dataset, on the same train/val split as the SoVITS stage.

    Every clip left out is in `filtered` (and logged). Raises `GsvError` when no training or no
    validation clip is left, naming the most common reason.
    """
    layout = DatasetLayout(Path(dataset_dir))
    clips = read_manifest(layout.manifest)
    train: list[GptClip] = []
    val: list[GptClip] = []
    filtered: dict[str, list[str]] = {}
    for clip in clips:
        view, reason, detail = _clip_view(layout, clip, max_sec)
        if view is None:
            filtered.setdefault(reason, []).append(f"{clip.id} ({detail})" if detail else clip.id)
        elif clip.split == "val":
            val.append(view)
        else:
            train.append(view)
    for reason, ids in filtered.items():
        LOG.warning(
            "GPT stage: %d clip(s) left out, %s: %s",
            len(ids),
            reason,
            ", ".join(ids[:_SHOW]) + (" ..." if len(ids) > _SHOW else ""),
        )
    splits = GptSplits(layout, train, val, filtered)
    for name, part in (("training", train), ("validation", val)):
        if not part:
            common = max(filtered.items(), key=lambda kv: len(kv[1]))[0] if filtered else "none in the split"
            raise GsvError(
                f"dataset {layout.root}: no {name} clip left for the GPT stage ({len(clips)} clips; "
                f"most common reason: {common})"
            )
    return splits


class GptDataset(Dataset[GptItem]):
    """Loads `GptClip`s (codes and BERT `.npy` files; no pickles)."""

    def __init__(self, clips: Sequence[GptClip]) -> None:
        self.clips = list(clips)

    def __len__(self) -> int:
        return len(self.clips)

    def seconds(self) -> list[float]:
        """Length of each clip in seconds of codes (what the official sampler sorts by)."""
        return [c.n_codes / CODES_HZ for c in self.clips]

    def __getitem__(self, index: int) -> GptItem:
        c = self.clips[index]
        codes = np.load(c.semantic_path, allow_pickle=False)
        bert = None
        if c.bert_path is not None:
            bert = torch.from_numpy(np.load(c.bert_path, allow_pickle=False).astype(np.float32))
        return GptItem(
            c.clip_id,
            torch.tensor(c.phone_ids, dtype=torch.long),
            torch.from_numpy(codes.astype(np.int64)),
            bert,
        )


# ----------------------------------------------------------------------------------------------- sampler
class OfficialBucketSampler:
    """Batches as the official s1 loader makes them (`DistributedBucketSampler` + DataLoader).

    Items (each clip `repeats` times, in clip order, as the official list duplication) are sorted by
    length (stable); buckets of width `bucket_width` s start at the first item at or above the bound,
    which then grows by `bucket_width`. Each epoch (seed + epoch, Python's Mersenne Twister): shuffle inside
    buckets, concatenate, cut into chunks of `batch_size · num_replicas`, shuffle the chunks, pad to a
    multiple of the world size with the first indices, take every `num_replicas`-th from `rank`, cut
    batches of `batch_size` (the last may be short). Indices are item positions; `item % n_clips` is the
    clip.
    """

    def __init__(
        self,
        seconds: Sequence[float],
        batch_size: int,
        *,
        repeats: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        bucket_width: float = 2.0,
    ) -> None:
        if batch_size < 1 or repeats < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError("need batch_size >= 1, repeats >= 1 and 0 <= rank < num_replicas")
        self.n_clips = len(seconds)
        items = [s for _ in range(repeats) for s in seconds]
        self.n_items = len(items)
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0
        order = sorted(range(len(items)), key=lambda i: items[i])
        self.buckets: list[list[int]] = []
        current: list[int] = []
        bound = bucket_width
        for i in order:
            if items[i] < bound:
                current.append(i)
            else:
                self.buckets.append(current)
                current = [i]
                bound += bucket_width
        if current:
            self.buckets.append(current)
        self.per_rank = math.ceil(self.n_items / num_replicas)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (0-based, as Lightning's) and skip `start_batch` batches (mid-epoch resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def indices(self) -> list[int]:
        """This rank's item order for the current epoch."""
        rng = random.Random(self.seed + self.epoch)
        flat: list[int] = []
        for bucket in self.buckets:
            copy = list(bucket)
            rng.shuffle(copy)
            flat.extend(copy)
        group = self.batch_size * self.num_replicas
        chunks = [flat[i : i + group] for i in range(0, len(flat), group)]
        rng.shuffle(chunks)
        out = list(itertools.chain.from_iterable(chunks))
        total = self.per_rank * self.num_replicas
        out += out[: total - len(out)]
        return out[self.rank : total : self.num_replicas]

    def batches(self) -> list[list[int]]:
        """All of this epoch's batches for this rank, as clip indices (before `start_batch`)."""
        idx = [i % self.n_clips for i in self.indices()]
        return [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start_batch :])

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size) - self.start_batch
