"""Benchmark `gsv-train prepare`: audio-seconds processed per wall-second, whole run and per core.

Input: LJSpeech clips (../shared/data/ljspeech-mini, else the embedded sample) joined with seeded
0.3-1.5 s silences into `--files` long 22.05 kHz 16-bit WAV recordings totalling at least `--minutes`.

What is timed is the user's path from raw recordings to clips with cached spectrograms, i.e. what the
official "slicing + spectrogram" path does (tools/slice_audio.py, then a spectrogram per clip):

1. `slice`: `prepare(--slice-only)`: decode, resample to 32 kHz, official slicer, loudness, write clips
   and the `.list` template;
2. `spectrogram`: the template filled with a dummy text and passed back with `--transcripts`: each clip
   is decoded, edge-trimmed, mixed to the training loudness, written, and its spectrogram cached;
3. `total` = both. Speed = seconds of input recording / wall seconds of `prepare()` calls (library,
   in this process; Python start-up and the one-time torch/matplotlib imports are excluded, the process pool's
   start-up is included). Per core = speed / workers.

Each step is run `--repeat` times and the fastest run is reported (other jobs on a shared machine only
ever slow a run down). `CPU s` is the CPU time of this process and its pool workers (least of the runs),
and `per CPU-s` = input seconds / CPU seconds: the per-core throughput, which other load on the machine
changes much less than wall time.

    python scripts/bench_prepare.py [--minutes 10] [--files 8] [--workers 1 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gptsovits_train.config import Config  # noqa: E402
from gptsovits_train.data.prepare import prepare  # noqa: E402


def clip_paths() -> list[Path]:
    shared = REPO.parent / "shared" / "data" / "ljspeech-mini" / "wavs"
    folder = shared if shared.is_dir() else REPO / "gptsovits_train" / "sample_data" / "wavs"
    return sorted(folder.glob("*.flac"))


def build_input(folder: Path, minutes: float, n_files: int, seed: int = 0) -> float:
    """Write `n_files` recordings of clips + silences; returns their total length in seconds."""
    rng = np.random.default_rng(seed)
    clips = []
    sr = None
    for p in clip_paths():
        x, rate = sf.read(p, dtype="float32")
        sr = sr or rate
        if rate != sr:
            raise SystemExit(f"{p}: sample rate {rate} != {sr}")
        clips.append(x)
    assert sr is not None
    per_file = minutes * 60.0 / n_files
    total = 0.0
    k = 0
    for f in range(n_files):
        parts: list[np.ndarray] = []
        length = 0
        while length < per_file * sr:
            x = clips[k % len(clips)]
            k += 1
            gap = np.zeros(int(rng.uniform(0.3, 1.5) * sr), dtype=np.float32)
            parts += [x, gap]
            length += x.shape[0] + gap.shape[0]
        audio = np.concatenate(parts)
        sf.write(folder / f"long_{f:02d}.wav", audio, sr, subtype="PCM_16")
        total += audio.shape[0] / sr
    return total


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the pool's workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def fill_template(template: Path, filled: Path) -> None:
    lines = [ln + "text" for ln in template.read_text(encoding="utf-8").splitlines() if ln.strip()]
    filled.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3, help="runs per worker count; the fastest is reported")
    args = ap.parse_args()

    # one-time imports, not part of the timing
    import matplotlib.pyplot  # noqa: F401
    import torch  # noqa: F401

    cfg = Config()
    work = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        src = work / "input"
        src.mkdir()
        seconds = build_input(src, args.minutes, args.files)
        print(
            f"input: {args.files} files, {seconds / 60:.2f} min of 22.05 kHz 16-bit WAV "
            f"({len(clip_paths())} LJSpeech clips)"
        )
        rows = []
        for w in args.workers:
            best = {"slice": float("inf"), "spectrogram": float("inf")}
            cpu = {"slice": float("inf"), "spectrogram": float("inf")}
            for r in range(args.repeat):
                sliced, ds = work / f"sliced_{w}_{r}", work / f"dataset_{w}_{r}"
                c0, t0 = cpu_seconds(), time.perf_counter()
                r1 = prepare([src], sliced, cfg, slice_only=True, workers=w, progress=False)
                c1, t1 = cpu_seconds(), time.perf_counter()
                fill_template(sliced / "transcripts_template.list", sliced / "filled.list")
                c2, t2 = cpu_seconds(), time.perf_counter()
                r2 = prepare([], ds, cfg, transcripts=[sliced / "filled.list"], workers=w, progress=False)
                c3, t3 = cpu_seconds(), time.perf_counter()
                best["slice"] = min(best["slice"], t1 - t0)
                best["spectrogram"] = min(best["spectrogram"], t3 - t2)
                cpu["slice"] = min(cpu["slice"], c1 - c0)
                cpu["spectrogram"] = min(cpu["spectrogram"], c3 - c2)
                n_spec = sum(1 for c in r2.clips if c.spec)
                print(
                    f"workers={w} run {r + 1}: {r1.n_clips} clips sliced in {t1 - t0:.2f} s, "
                    f"{n_spec} spectrograms in {t3 - t2:.2f} s, {len(r2.skipped)} skipped"
                )
                shutil.rmtree(sliced)
                shutil.rmtree(ds)
            best["total"] = best["slice"] + best["spectrogram"]
            cpu["total"] = cpu["slice"] + cpu["spectrogram"]
            for name in ("slice", "spectrogram", "total"):
                wall = best[name]
                rows.append(
                    (w, name, wall, seconds / wall, seconds / wall / w, cpu[name], seconds / cpu[name])
                )
        print()
        print(
            f"{'workers':>7}  {'step':<11}  {'wall s':>7}  {'x real time':>11}  {'per core':>9}  "
            f"{'CPU s':>6}  {'per CPU-s':>9}"
        )
        for w, name, wall, speed, per_core, cpu_s, per_cpu in rows:
            print(
                f"{w:>7}  {name:<11}  {wall:>7.2f}  {speed:>10.0f}x  {per_core:>8.0f}x  "
                f"{cpu_s:>6.2f}  {per_cpu:>8.0f}x"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
