"""Benchmark the clipping check: `detect_clipping` on a whole array vs `ClippingCounter` fed block by block.

Three synthetic 44.1 kHz signals of `--minutes` each (float32 mono): three partials (140, 290, 610 Hz)
under a slow envelope plus a little noise, peaking at 0.7 (an ordinary recording); the same driven into
int16 full scale (clipped, top 1.0); and driven into 1.0 as a float file with five peaks at 1.2 (top
above 1.0). The counter gets the
same array in blocks of `stream.BLOCK_FRAMES` (65,536) frames, as `decode_to_spill` produces them. Each is
timed in process CPU seconds (fastest of `--repeat`), and the table gives them per hour of audio, the
results' equality and the spans the counter held at the end.

    python scripts/bench_clipping.py [--minutes 60] [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gptsovits_train.audio.clipping import Clipping, ClippingCounter, detect_clipping  # noqa: E402
from gptsovits_train.audio.stream import BLOCK_FRAMES  # noqa: E402

RATE = 44_100


def signals(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(n, dtype=np.float64) / RATE
    voice = sum(
        np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / k for k, f in enumerate((140, 290, 610), 1)
    )
    envelope = np.abs(np.sin(2 * np.pi * 0.3 * t)) ** 2
    speech = (voice * envelope + 0.01 * rng.standard_normal(n)).astype(np.float32)
    speech *= np.float32(0.7) / np.abs(speech).max()
    clipped = np.clip(np.round(speech * np.float32(2 * 32768)), -32768, 32767).astype(np.float32) / 32768
    hot = np.clip(speech * np.float32(2), -1, 1)
    hot[rng.integers(0, n, 5)] = 1.2
    return {"speech, peak 0.7": speech, "int16 clipped, top 1.0": clipped, "float, top 1.2": hot}


def cpu_seconds(fn: Callable[[], Clipping], repeat: int) -> tuple[float, Clipping]:
    best, result = float("inf"), Clipping(0.0, 0.0)
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    n = int(args.minutes * 60 * RATE)
    per_hour = 60 / args.minutes
    rows = [("signal", "share", "detect_clipping s/h", "ClippingCounter s/h", "equal", "spans held")]
    for name, x in signals(n).items():
        counter = ClippingCounter()

        def streamed(x: np.ndarray = x) -> Clipping:
            nonlocal counter
            counter = ClippingCounter()
            for start in range(0, x.size, BLOCK_FRAMES):
                counter.update(x[start : start + BLOCK_FRAMES])
            return counter.result()

        def whole_file(x: np.ndarray = x) -> Clipping:
            return detect_clipping(x)

        whole_s, whole = cpu_seconds(whole_file, args.repeat)
        stream_s, stream = cpu_seconds(streamed, args.repeat)
        rows.append(
            (
                name,
                f"{whole.share:.4f}",
                f"{whole_s * per_hour:.2f}",
                f"{stream_s * per_hour:.2f}",
                str(stream == whole),
                str(counter.spans_held()),
            )
        )
    print(
        f"{args.minutes:g} min at {RATE} Hz ({n} samples), blocks of {BLOCK_FRAMES}; CPU s per hour of audio"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
