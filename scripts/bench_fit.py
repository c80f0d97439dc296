"""Benchmark the `fit` training loop: steps/s, samples/s, peak memory, time waiting for data.

Runs the real `gptsovits_train.train.loop.fit` for `--steps` optimizer steps (after `--warmup` steps that
are not timed) and prints a table. Without `--dataset`, a dataset is built from the embedded LJSpeech
sample (real audio and spectrograms; random HuBERT features and phoneme ids, which cost the same).

    python scripts/bench_fit.py --config configs/base.yaml --set train.batch_size=8      # GPU, full v2
    python scripts/bench_fit.py --config configs/tiny.yaml --steps 10 --warmup 2         # CPU smoke

Peak memory: CUDA `max_memory_allocated` on a GPU, the process's peak RSS on CPU. Data wait: the share of
step time spent blocked on the DataLoader (target < 5 %).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gptsovits_train.config import load_config  # noqa: E402
from gptsovits_train.logging_setup import configure_logging  # noqa: E402
from gptsovits_train.train.loop import StepInfo, fit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "base.yaml"))
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override a.b=value")
    ap.add_argument("--dataset", help="prepared dataset folder (default: built from the embedded sample)")
    ap.add_argument("--clips", type=int, default=12, help="clips of the built dataset (max 12)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    args = ap.parse_args()
    configure_logging(quiet=True)

    with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
        dataset = args.dataset
        if dataset is None:
            from tests.fit_helpers import make_dataset

            n_val = 1
            dataset = str(
                make_dataset(Path(tmp) / "ds", n_train=args.clips - n_val, n_val=n_val, max_seconds=None).root
            )
        total = args.warmup + args.steps
        cfg = load_config(
            args.config,
            [
                *args.overrides,
                f"train.dataset={dataset}",
                f"train.max_steps={total}",
                f"train.epochs={10**6}",
                "train.val_every=1000000",
                "train.tensorboard=false",
                "train.keep_top_k=0",
            ],
        )
        waits: list[float] = []
        times: list[float] = []
        sizes: list[int] = []

        def record(info: StepInfo) -> None:
            if info.step > args.warmup:
                waits.append(info.data_wait_s)
                times.append(info.data_wait_s + info.step_time_s)
                sizes.append(info.batch_size)

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        result = fit(cfg, Path(tmp) / "run", progress=False, on_step=record)
        wall = time.perf_counter() - t0
        if torch.cuda.is_available():
            peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (CUDA allocated)"
        else:
            peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (peak RSS)"

    timed = sum(times)
    rows = [
        ("device", result.summary["device"]),
        ("precision", result.summary["precision"]),
        ("batch size", str(cfg.train.batch_size)),
        ("segment (samples)", str(cfg.model.segment_size)),
        ("num_workers", str(cfg.train.num_workers)),
        ("timed steps", f"{len(times)} (after {args.warmup} warm-up)"),
        ("steps/s", f"{len(times) / timed:.3f}"),
        ("samples/s", f"{sum(sizes) / timed:.2f}"),
        ("step time median", f"{statistics.median(times) * 1000:.1f} ms"),
        ("data wait", f"{100 * sum(waits) / timed:.2f} % of step time"),
        ("peak memory", peak),
        ("whole run (incl. setup, checkpoints, final validation)", f"{wall:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    logging.captureWarnings(True)
    main()
