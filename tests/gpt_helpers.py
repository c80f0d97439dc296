"""GPT-stage test helpers: the GPT files of a prepared dataset (what `prepare` with stages [sovits, gpt]
writes: `semantic/<id>.npy` codes and, for zh clips, `bert/<id>.npy`), and a tiny GPT config."""

from __future__ import annotations

import dataclasses

import numpy as np

from gptsovits_train.data.manifest import read_manifest, write_manifest
from gptsovits_train.fileio import atomic_save_npy
from gptsovits_train.layout import DatasetLayout

#: --set overrides for a tiny GPT (1 layer, 16 dims) that trains a few optimizer steps per epoch on CPU.
TINY_GPT = [
    "gpt.model.hidden_dim=16",
    "gpt.model.embedding_dim=16",
    "gpt.model.head=2",
    "gpt.model.n_layer=1",
    "gpt.epochs=2",
    "gpt.batch_size=2",
    "gpt.min_items_per_epoch=8",
    "gpt.accumulate_batches=2",
    "gpt.precision=fp32",
    "gpt.val_batch_size=2",
]


def add_gpt_features(layout: DatasetLayout, *, bert_every: int = 2, seed: int = 0) -> None:
    """Write seeded random codes (T_hubert // 2 of each clip's ssl frames) and BERT features for every
    `bert_every`-th clip (marked zh), and list them in the manifest."""
    rng = np.random.default_rng(seed)
    clips = []
    for i, clip in enumerate(read_manifest(layout.manifest)):
        n_codes = clip.n_frames // 2
        atomic_save_npy(layout.semantic(clip.id), rng.integers(0, 1024, n_codes).astype(np.int64))
        bert = None
        if i % bert_every == 0 and clip.phone_ids:
            feats = rng.standard_normal((1024, len(clip.phone_ids))).astype(np.float16)
            atomic_save_npy(layout.bert(clip.id), feats)
            bert = layout.relative(layout.bert(clip.id))
        clips.append(
            dataclasses.replace(
                clip,
                semantic=layout.relative(layout.semantic(clip.id)),
                bert=bert,
                language="zh" if bert else clip.language,
            )
        )
    write_manifest(layout.manifest, clips)
