"""Benchmark the full-size GPT (s1) training step: steps/s, samples/s, tokens/s, peak memory.

Model: the official v2 `Text2SemanticDecoder` (24 layers, 512 dims, 16 heads, 77.6 M parameters) with
seeded random weights (speed does not depend on the values), in train mode (dropout 0.1 as official).
Batch: `--batch` clips (default 8) of `--seconds` seconds each (default 8: 200 codes at 25 Hz) and
`--phones-per-sec` phones per second (default 12, inside the official 3-25 filter), BERT features
for every clip, collated by the official collate. One timed step = forward (`T2SForward.loss`, the
official summed CE) + backward + one ScaledAdam update (the official optimizer; accumulation off, so a
"step" is one batch); `--warmup` untimed steps first, then the mean of `--steps` steps.

tokens/s counts target tokens (codes + EOS) per second. Peak memory: CUDA `max_memory_allocated`,
CPU the process's peak RSS (ru_maxrss; includes Python and torch).

    python scripts/bench_gpt.py [--device cpu|cuda] [--precision fp32|fp16|bf16] [--batch 8]
                                [--steps 3] [--warmup 1] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gptsovits_train.models.t2s import T2SModelConfig, Text2SemanticDecoder  # noqa: E402
from gptsovits_train.train.gpt_accumulation import AccumulationRule  # noqa: E402
from gptsovits_train.train.gpt_data import GptItem, gpt_collate  # noqa: E402
from gptsovits_train.train.gpt_step import GptStepper  # noqa: E402


def make_batch(batch: int, seconds: float, phones_per_sec: float, seed: int = 0) -> object:
    g = torch.Generator().manual_seed(seed)
    n_codes = int(seconds * 25)
    n_phones = int(seconds * phones_per_sec)
    items = [
        GptItem(
            f"clip{i}",
            torch.randint(0, 732, (n_phones,), generator=g),
            torch.randint(0, 1024, (n_codes,), generator=g),
            torch.randn(1024, n_phones, generator=g),
        )
        for i in range(batch)
    ]
    return gpt_collate(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--phones-per-sec", type=float, default=12.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    model = Text2SemanticDecoder(T2SModelConfig()).to(device).train()
    stepper = GptStepper(
        model,
        rule=AccumulationRule("per_epoch", 1),
        text_mask="official",
        device=device,
        precision=args.precision,
    )
    batch = make_batch(args.batch, args.seconds, args.phones_per_sec)
    n_targets = int((batch.semantic_lens + 1).sum())  # type: ignore[attr-defined]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        stepper.train_batch(batch, 0, 1)  # type: ignore[arg-type]
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        stepper.train_batch(batch, 0, 1)  # type: ignore[arg-type]
        sync()
        times.append(time.perf_counter() - start)
    mean = sum(times) / len(times)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        where = f"{torch.cuda.get_device_name(device)}, CUDA max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        where = f"CPU ({torch.get_num_threads()} threads), peak RSS"
    params = sum(p.numel() for p in model.parameters())
    print(f"GPT s1 full size ({params:,} parameters), {args.precision}, {where}")
    print(
        f"batch {args.batch} x {args.seconds:g} s ({int(args.seconds * 25)} codes, "
        f"{int(args.seconds * args.phones_per_sec)} phones), "
        f"{args.steps} timed steps after {args.warmup} warm-up"
    )
    print("| s/step | steps/s | samples/s | tokens/s | peak memory GiB |")
    print("|---|---|---|---|---|")
    print(f"| {mean:.3f} | {1 / mean:.3f} | {args.batch / mean:.2f} | {n_targets / mean:.0f} | {peak:.2f} |")


if __name__ == "__main__":
    main()
