"""Count what one SoVITS training step costs the host: tensor reads back to the host (each one a GPU
synchronisation), operators dispatched, and the step time — for the project's real `train.step.train_step`.

On a GPU every `.item()`, `bool(t)`, `float(t)`, `.tolist()` waits for all queued kernels, so the host
cannot run ahead; on CPU these reads are counted by wrapping the tensor methods. The operator count (aten
ops seen by the profiler) is the number of kernels the step launches on a GPU, to first order.

    python scripts/profile_step.py                        # tiny config, CPU: the counts
    python scripts/profile_step.py --config configs/base.yaml --batch 8 --device cuda --precision bf16
    python scripts/profile_step.py --optimizer foreach     # the optimizer of the plain step, for comparison

Prints one table row. Works on any checkout whose `train_step` has the same signature (run it with
PYTHONPATH pointing at an older checkout to get the "before" row).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import soundfile as sf
import soxr
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "gptsovits_train" / "sample_data" / "wavs"
HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__")


def make_batch(cfg, n: int, seconds: float):
    from gptsovits_train.audio.spectrogram import spectrogram
    from gptsovits_train.train.dataset import Batch

    audio = cfg.audio
    waves = []
    for path in sorted(SAMPLE.glob("*.flac")):
        data, sr = sf.read(path, dtype="float32")
        waves.append(torch.from_numpy(soxr.resample(data, sr, audio.sampling_rate)))
    waves = [waves[i % len(waves)] for i in range(n)]
    samples = int(seconds * audio.sampling_rate)
    waves = [torch.nn.functional.pad(w, (0, max(0, samples - len(w))))[:samples] for w in waves]
    specs = [spectrogram(w, audio) for w in waves]
    t = specs[0].shape[-1]
    tp = 2 * (t // 2 + 1)
    gen = torch.Generator().manual_seed(0)
    spec = torch.zeros(n, audio.n_freq, tp)
    wav = torch.zeros(n, 1, tp * audio.hop_length)
    for i, (w, s) in enumerate(zip(waves, specs, strict=True)):
        spec[i, :, :t] = s
        wav[i, 0, : len(w)] = w
    n_text = max(8, int(seconds * 12))
    full = torch.full((n,), t, dtype=torch.long)
    return Batch(
        ssl=torch.randn(n, cfg.model.ssl_dim, tp, generator=gen),
        ssl_lengths=full.clone(),
        spec=spec,
        spec_lengths=full.clone(),
        wav=wav,
        wav_lengths=torch.full((n,), samples, dtype=torch.long),
        text=torch.randint(1, 700, (n, n_text), generator=gen),
        text_lengths=torch.full((n,), n_text, dtype=torch.long),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--optimizer", default="fused", choices=["fused", "foreach"])
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import gptsovits_train
    from gptsovits_train.config import load_config
    from gptsovits_train.models import (
        MultiPeriodDiscriminator,
        build_discriminator_from_config,
        build_generator_from_config,
    )
    from gptsovits_train.train.distributed import DistContext
    from gptsovits_train.train.precision import make_scaler
    from gptsovits_train.train.step import train_step

    cfg = load_config(args.config, args.overrides)
    device = torch.device(args.device)
    G = build_generator_from_config(cfg.model, cfg.audio, seed=0)
    G.quantizer.initialize_random_(torch.Generator().manual_seed(0))
    for name, p in G.named_parameters():
        if name.startswith(("ssl_proj.", "quantizer.")):
            p.requires_grad_(False)
    periods = cfg.train.discriminator_periods
    D = (
        MultiPeriodDiscriminator(())
        if periods == []
        else build_discriminator_from_config(cfg.model, periods=periods)
    )
    G.to(device)
    D.to(device)
    g_params = [p for p in G.parameters() if p.requires_grad]
    d_params = [p for p in D.parameters() if p.requires_grad]
    impl = {args.optimizer: True}
    og = torch.optim.AdamW(g_params, 1e-4, betas=(0.8, 0.99), eps=1e-9, **impl)
    od = torch.optim.AdamW(d_params, 1e-4, betas=(0.8, 0.99), eps=1e-9, **impl)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=device, initialised_here=False)
    batch = make_batch(cfg, args.batch, args.seconds).to(device)
    scaler = make_scaler(device, args.precision)
    seg = cfg.model.segment_size // cfg.audio.hop_length

    def step():
        return train_step(
            G, D, batch, optim_g=og, optim_d=od, scaler=scaler, g_params=g_params, d_params=d_params,
            segment_frames=seg, audio=cfg.audio, train=cfg.train, device=device, precision=args.precision,
            ctx=ctx,
        )  # fmt: skip

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: lazy optimizer state, cached flags, cuDNN autotuning
    sync()
    # host reads of one step
    reads: Counter[str] = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counting(name):
        original = saved[name]

        def wrapper(self, *a, **k):
            caller = sys._getframe(1).f_code.co_filename
            # torch's non-fused optimizers read their per-parameter step counters, which live on the CPU
            # even in a GPU run (no GPU synchronisation): counted apart
            reads["optimizer step counters" if "torch/optim" in caller else name] += 1
            return original(self, *a, **k)

        return wrapper

    for name in HOST_READS:
        setattr(torch.Tensor, name, counting(name))
    try:
        step()
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)
    sync()
    # operators of one step
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        t0 = time.perf_counter()
        step()
        sync()
        profiled_wall = time.perf_counter() - t0
    averages = prof.key_averages()
    n_ops = sum(e.count for e in averages if e.key.startswith("aten::"))
    busy = "-"
    if device.type == "cuda":  # kernels' own device time over the step's wall time (one stream)
        kernel_us = sum(getattr(e, "self_device_time_total", 0.0) for e in averages)
        busy = f"{100 * kernel_us / 1e6 / profiled_wall:.0f} %"
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "-"
    where = Path(gptsovits_train.__file__).resolve().parents[1]
    print(f"checkout: {where}   config: {args.config} {' '.join(args.overrides)}   torch {torch.__version__}")
    print(f"device {device}  precision {args.precision}  batch {args.batch} x {args.seconds:g} s", end="")
    print(f"  optimizer {args.optimizer}")
    print(
        f"| tensor reads / step (GPU syncs) | of which | aten ops / step | step ms (median of {args.steps}) |"
    )
    print("|---|---|---|---|")
    detail = ", ".join(f"{k} {v}" for k, v in sorted(reads.items())) or "-"
    syncing = sum(v for k, v in reads.items() if k != "optimizer step counters")
    print(f"| {syncing} | {detail} | {n_ops} | {1000 * statistics.median(times):.1f} ", end="")
    print(f"| {args.batch / statistics.median(times):.1f} | {busy} | {peak} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
