"""Find soxr's aligned period for input rates -> 32 kHz (the table `audio.segments.ALIGNED_PERIODS`).

A soxr "HQ" stream filters in FFT blocks, so a stream started part way into a signal rounds
differently from the stream started at 0, except when it starts at a multiple of some period. This
script finds, per input rate, the smallest start offset (a multiple of the rate pair's step
``sr_in / gcd(sr_in, sr_out)``, so that the offset maps to a whole output sample) at which a stream
started there, after a warm-up, emits exactly the whole stream's samples, and how many of its first
outputs differ (the warm-up it needs). It prints a table row per rate:

    python scripts/find_resample_periods.py 44100 48000 22050 16000 24000 8000 12000 88200 96000

Found with python-soxr 1.1.0 (`ALIGNED_PERIODS` records them; `audio.segments.aligned_period` checks
each again at run time, so a soxr that blocks differently falls back to one stream). 11025 Hz has no
period below 20 s and is left out.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import soxr

OUT = 32000


def stream(x: np.ndarray, sr: int, block: int = 65536) -> np.ndarray:
    """(n,) float32 resampled to `OUT` by one soxr stream fed in blocks, flushed at the end."""
    rs = soxr.ResampleStream(sr, OUT, 1, dtype="float32", quality="HQ")
    outs = [rs.resample_chunk(x[i : i + block]) for i in range(0, len(x), block)]
    outs.append(rs.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(outs)


def find(sr: int, max_seconds: float, budget_seconds: float) -> tuple[int, int] | None:
    """(period in input frames, outputs that differ at the start of a stream started there), or None."""
    g = math.gcd(sr, OUT)
    step_in, step_out = sr // g, OUT // g
    x = (0.3 * np.random.default_rng(1).standard_normal(int(sr * (max_seconds + 8)))).astype(np.float32)
    full = stream(x, sr)
    t0 = time.monotonic()
    k = 1
    while k * step_in <= sr * max_seconds and time.monotonic() - t0 < budget_seconds:
        start, o = k * step_in, k * step_out
        part = stream(x[start : start + sr * 6], sr)
        if np.array_equal(part[2 * OUT : 4 * OUT], full[o + 2 * OUT : o + 4 * OUT]):
            differ = np.flatnonzero(part[: 4 * OUT] != full[o : o + 4 * OUT])
            return start, int(differ[-1]) + 1 if differ.size else 0
        k += 1
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rates", type=int, nargs="+")
    ap.add_argument("--max-seconds", type=float, default=20.0, help="longest period searched")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of search per rate at most")
    args = ap.parse_args()
    print(f"soxr {soxr.__version__}")
    print("| input Hz | period (input frames) | period s | warm-up outputs |")
    print("|---|---|---|---|")
    for sr in args.rates:
        found = find(sr, args.max_seconds, args.budget)
        if found is None:
            print(f"| {sr} | none up to {args.max_seconds:g} s | | |")
        else:
            print(f"| {sr} | {found[0]} | {found[0] / sr:.3f} | {found[1]} |")


if __name__ == "__main__":
    main()
