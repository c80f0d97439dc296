"""Benchmark the v2Pro/v2ProPlus sv stage (`features.sv.SvFeaturizer`): time per minute of audio.

Model: the official ERes2NetV2(w24 s4 ep4) structure with the fixture's seeded recipe weights (the compute
does not depend on the values), or `--sv FILE` for the real checkpoint. Input: LJSpeech clips
(../shared/data/ljspeech-mini, else the embedded sample) resampled to 32 kHz with the training loudness
mix, as dataset wavs hold them. What is timed is `SvFeaturizer.features(clip)` for every clip (the stage's
own per-clip work: 32 → 16 kHz sinc resample, Kaldi fbank, `forward3`; file IO excluded), after one
warm-up clip; each setting runs `--repeat` times and the fastest run is reported. The table also splits
the time into resample + fbank and the network.

    python scripts/bench_sv.py [--device cpu cuda] [--threads N] [--repeat 2] [--clips 32]
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
from gptsovits_train.features.sv import LoadedSv, SvFeaturizer, load_sv_model  # noqa: E402
from gptsovits_train.models.eres2netv2 import ERes2NetV2, seeded_random_state  # noqa: E402


def clip_paths() -> list[Path]:
    shared = REPO.parent / "shared" / "data" / "ljspeech-mini" / "wavs"
    folder = shared if shared.is_dir() else REPO / "gptsovits_train" / "sample_data" / "wavs"
    return sorted(folder.glob("*.flac"))


def recipe_model() -> LoadedSv:
    model = ERes2NetV2().eval()
    model.load_state_dict(seeded_random_state(model, 1234))
    return LoadedSv(model=model.requires_grad_(False), source="recipe weights", random=True, digest="")


def clips_32k(n: int) -> list[np.ndarray]:
    out = []
    for path in clip_paths()[:n]:
        audio = load_audio(path)
        wave = resample(audio.samples, audio.sample_rate, 32000)
        out.append(apply_wav32k_mix(wave))
    return out


def run(featurizer: SvFeaturizer, waves: list[np.ndarray]) -> tuple[float, float, float]:
    """(wall seconds, seconds spent in resample + fbank, process CPU seconds) over all clips."""
    sync = torch.cuda.synchronize if featurizer.device.type == "cuda" else (lambda: None)
    total = front = 0.0
    cpu0 = time.process_time()
    for w in waves:
        sync()
        t0 = time.perf_counter()
        featurizer.fbank(w)
        sync()
        t1 = time.perf_counter()
        featurizer.features(w)
        sync()
        t2 = time.perf_counter()
        front += t1 - t0
        total += t2 - t1
    return total, front, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", nargs="+", default=["cpu"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--sv", default=None, help="the real pretrained_eres2netv2w24s4ep4.ckpt (optional)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    waves = clips_32k(args.clips)
    seconds = sum(len(w) for w in waves) / 32000
    print(
        f"{len(waves)} clips, {seconds:.1f} s of audio; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        "| device | precision | wall s | wall s per audio minute | of which resample+fbank "
        "| process CPU s per audio minute | x real time |"
    )
    print("|---|---|---|---|---|---|---|")
    for dev in args.device:
        if dev == "cuda" and not torch.cuda.is_available():
            print(f"| {dev} | - | no CUDA device | | | | |")
            continue
        loaded = load_sv_model(args.sv) if args.sv else recipe_model()
        featurizer = SvFeaturizer(loaded, dev, fp16=True)
        featurizer.features(waves[0])  # warm-up
        best, front, cpu = min(run(featurizer, waves) for _ in range(args.repeat))
        per_min = best / seconds * 60
        prec = "fp16" if featurizer.half else "fp32"
        print(
            f"| {dev} | {prec} | {best:.2f} | {per_min:.2f} | {front / seconds * 60:.2f} "
            f"| {cpu / seconds * 60:.2f} | {seconds / best:.1f} |"
        )


if __name__ == "__main__":
    main()
