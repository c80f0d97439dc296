"""Test helpers of the `fit` tests: a small prepared dataset with the real on-disk layout.

`make_dataset` writes what `gsv-train prepare` writes (DatasetLayout, manifest.jsonl, 32 kHz int16 wavs,
float16 linear spectrograms from `audio.spectrogram`), from the real LJSpeech clips of the embedded sample.
Only the HuBERT features and phoneme ids are random (seeded), so the tests need no HuBERT model and no g2p.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from gptsovits_train.audio.spectrogram import spectrogram
from gptsovits_train.config import AudioConfig
from gptsovits_train.data.manifest import Clip, write_manifest
from gptsovits_train.fileio import atomic_save_npy
from gptsovits_train.layout import DatasetLayout

REPO = Path(__file__).resolve().parents[1]
SAMPLE_WAVS = REPO / "gptsovits_train" / "sample_data" / "wavs"
CONFIGS = REPO / "configs"


def make_dataset(
    root: Path,
    *,
    n_train: int = 6,
    n_val: int = 2,
    max_seconds: float | None = 2.0,
    seconds: list[float] | None = None,
    audio: AudioConfig | None = None,
    ssl_dim: int = 768,
    n_symbols: int = 732,
    seed: int = 0,
) -> DatasetLayout:
    """Write a dataset of `n_train + n_val` real clips under `root`, the first `n_train` in the train split.

    Clips are cut to `max_seconds`, or clip i to `seconds[i]` when given.
    """
    audio = audio or AudioConfig()
    layout = DatasetLayout(root)
    rng = np.random.default_rng(seed)
    sources = sorted(SAMPLE_WAVS.glob("*.flac"))
    if n_train + n_val > len(sources):
        raise ValueError(f"only {len(sources)} sample clips")
    clips = []
    for i, src in enumerate(sources[: n_train + n_val]):
        wave, sr = sf.read(src, dtype="float32")
        wave = soxr.resample(wave, sr, audio.sampling_rate).astype(np.float32)
        limit = seconds[i] if seconds is not None else max_seconds
        if limit is not None:
            wave = wave[: int(limit * audio.sampling_rate)]
        pcm = np.clip(np.round(wave * 32767), -32768, 32767).astype(np.int16)
        clip_id = f"{src.stem}_{i:03d}"
        layout.wavs_dir.mkdir(parents=True, exist_ok=True)
        sf.write(layout.wav(clip_id), pcm, audio.sampling_rate, subtype="PCM_16")
        wave32 = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
        spec = spectrogram(wave32, audio).numpy().astype(np.float16)
        n_frames = spec.shape[1]
        atomic_save_npy(layout.spec(clip_id), spec)
        ssl = rng.standard_normal((ssl_dim, n_frames)).astype(np.float16)
        atomic_save_npy(layout.ssl(clip_id), ssl)
        n_phones = int(rng.integers(8, 30))
        phone_ids = rng.integers(1, n_symbols, size=n_phones).tolist()
        clips.append(
            Clip(
                id=clip_id,
                path=layout.relative(layout.wav(clip_id)),
                source=str(src),
                start=0.0,
                end=len(pcm) / audio.sampling_rate,
                duration=len(pcm) / audio.sampling_rate,
                text="synthetic phonemes",
                language="en",
                speaker="lj",
                split="val" if i >= n_train else "train",
                n_samples=len(pcm),
                n_frames=n_frames,
                spec=layout.relative(layout.spec(clip_id)),
                ssl=layout.relative(layout.ssl(clip_id)),
                phones=[f"p{p}" for p in phone_ids],
                phone_ids=[int(p) for p in phone_ids],
                text_version="v2",
            )
        )
    write_manifest(layout.manifest, clips)
    return layout


def fit_cli(dataset_root: Path, run_dir: Path, *overrides: str) -> list[str]:
    """The command line of `gsv-train fit` on the tiny config (for tests that run it as a real process)."""
    sets = [arg for item in (f"train.dataset={dataset_root}", *overrides) for arg in ("--set", item)]
    return [
        sys.executable,
        "-m",
        "gptsovits_train",
        "fit",
        "--config",
        str(CONFIGS / "tiny.yaml"),
        *sets,
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]
