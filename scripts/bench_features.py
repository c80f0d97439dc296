"""Benchmark HuBERT feature extraction (`features.HubertFeaturizer`): clips/s and audio-seconds/s.

Model: the real chinese-hubert-base architecture (HubertConfig defaults: 12 layers, hidden 768, conv 512,
conv positional embedding 128) with seeded random weights (speed does not depend on the values), or
`--hubert DIR` for a real folder. Input: LJSpeech clips (../shared/data/ljspeech-mini, else the embedded
sample) resampled to 32 kHz with the training loudness mix, then the official HuBERT input
(`hubert_input`: x 1145.14, 16 kHz). What is timed is `HubertFeaturizer(...)(batch)` over all clips in
length-sorted batches (the stage's own loop, without file IO), after one warm-up batch; each setting is
run `--repeat` times and the fastest run is reported. The table also gives the largest difference
between the batched features and `model(clip)` one clip at a time.

    python scripts/bench_features.py [--device cpu cuda] [--batch 1 8] [--repeat 2] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gptsovits_train.audio.io import load_audio, resample  # noqa: E402
from gptsovits_train.audio.loudness import apply_wav32k_mix  # noqa: E402
from gptsovits_train.features.hubert import (  # noqa: E402
    HubertFeaturizer,
    LoadedHubert,
    hubert_input,
    length_batches,
    load_hubert,
)


def clip_paths() -> list[Path]:
    shared = REPO.parent / "shared" / "data" / "ljspeech-mini" / "wavs"
    folder = shared if shared.is_dir() else REPO / "gptsovits_train" / "sample_data" / "wavs"
    return sorted(folder.glob("*.flac"))


def base_architecture() -> LoadedHubert:
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    model = HubertModel(HubertConfig()).eval()  # defaults = hubert-base = chinese-hubert-base shapes
    model.requires_grad_(False)
    return LoadedHubert(model=model, path=Path("<random base>"), random=True, hidden_size=768)


def run(feat: HubertFeaturizer, waves: list[np.ndarray], batch: int) -> float:
    start = time.perf_counter()
    for idx in length_batches([len(w) for w in waves], batch):
        feat([waves[i] for i in idx])
    if feat.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def max_batch_error(feat: HubertFeaturizer, waves: list[np.ndarray], batch: int) -> float:
    idx = length_batches([len(w) for w in waves], batch)[0]
    got = feat([waves[i] for i in idx])
    worst = 0.0
    for i, g in zip(idx, got, strict=True):
        assert g is not None
        with torch.no_grad():
            x = torch.from_numpy(waves[i])[None].to(feat.device, feat.dtype)
            ref = feat.model(x).last_hidden_state[0].T.float().cpu().numpy()
        worst = max(worst, float(np.abs(g - ref).max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hubert", type=Path, default=None, help="real HF folder (default: random base arch)")
    ap.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--clips", type=int, default=None, help="use only the first N clips")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    paths = clip_paths()[: args.clips]
    waves = []
    for p in paths:
        a = load_audio(p)
        w32 = apply_wav32k_mix(resample(a.samples, a.sample_rate, 32000))
        waves.append(hubert_input(w32, apply_mix=False))
    seconds = sum(len(w) for w in waves) / 16000
    mean = seconds / len(waves)
    print(f"{len(waves)} clips, {seconds:.1f} s of audio ({mean:.2f} s mean), from {paths[0].parent}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    rows = [("device", "precision", "batch", "clips/s", "audio s/s", "wall s", "max |batched-single|")]
    for device in args.device:
        if device == "cuda" and not torch.cuda.is_available():
            print("no CUDA device: skipping cuda")
            continue
        for fp16 in [False, True] if device == "cuda" else [False]:
            loaded = load_hubert(args.hubert, verify=False) if args.hubert else base_architecture()
            feat = HubertFeaturizer(loaded, device, fp16=fp16)
            run(feat, waves[:2], 2)  # warm-up
            for batch in args.batch:
                best = min(run(feat, waves, batch) for _ in range(args.repeat))
                err = max_batch_error(feat, waves, batch)
                rows.append(
                    (
                        device,
                        "fp16" if feat.half else "fp32",
                        str(batch),
                        f"{len(waves) / best:.2f}",
                        f"{seconds / best:.1f}",
                        f"{best:.2f}",
                        f"{err:.2e}",
                    )
                )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
