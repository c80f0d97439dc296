"""Time one full-size SoVITS training step (D step + G step, all losses) beside the official figures.

The step is the official one (facts §6.5): G forward; D step on `(y, y_hat.detach())`; G step with
`gen + fm + 45*mel + kl + kl_ssl`; AdamW(lr 1e-4, betas (0.8, 0.99), eps 1e-9) for both, the G text
parts (`parameter_groups()`) at lr * 0.4.
The batch is 2 real LJSpeech clips (3.0 s and 2.7 s, resampled to 32 kHz) padded like the official
collate (150/135 frames -> 152), random 768-d SSL features, 40/33 random phoneme ids; the RVQ codebook is
random and marked initialised (as after loading pretrained weights).

    python scripts/bench_model.py                       # CPU, fp32, 5 timed steps after 2 warm-up steps
    python scripts/bench_model.py --device cuda --amp   # GPU with fp16 autocast + GradScaler
    python scripts/bench_model.py --threads 1           # 1 thread: CPU seconds stay meaningful under load
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import soundfile as sf
import soxr
import torch

from gptsovits_train.audio.spectrogram import mel_spectrogram, spec_to_mel, spectrogram
from gptsovits_train.config import AudioConfig
from gptsovits_train.models import build_discriminator, build_generator
from gptsovits_train.models.commons import slice_segments
from gptsovits_train.models.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    mel_l1_loss,
)

SAMPLE = Path(__file__).resolve().parents[1] / "gptsovits_train" / "sample_data" / "wavs"
OFFICIAL_CPU = {  # facts §10 / sovits_v2_forward_shapes.json (2 cores, fp32, torch 2.13 CPU)
    "G fwd+bwd (mel+KL)": "1.45-1.56 s (runs 1.54/1.45/1.56/1.50)",
    "full step (D+G)": "5.2-6.4 s (runs 6.02/5.18/6.37)",
}


def load_batch(audio: AudioConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """Two LJSpeech clips cut to 3.0 s / 2.7 s, official collate padding (to 2*(max//2+1) frames)."""
    seconds = [3.0, 2.7]
    waves = []
    for path in sorted(SAMPLE.glob("*.flac")):
        if len(waves) == len(seconds):
            break
        data, sr = sf.read(path, dtype="float32")
        data = soxr.resample(data, sr, audio.sampling_rate)
        n = int(seconds[len(waves)] * audio.sampling_rate)
        if len(data) >= n:  # skip clips shorter than the wanted length
            waves.append(torch.from_numpy(data[:n]))
    if len(waves) < len(seconds):
        raise SystemExit(f"need {len(seconds)} sample clips of >= {max(seconds)} s in {SAMPLE}")
    specs = [spectrogram(w, audio) for w in waves]
    frames = [s.shape[-1] for s in specs]
    t_max = 2 * (max(frames) // 2 + 1)
    b = len(waves)
    spec = torch.zeros(b, audio.n_freq, t_max)
    wav = torch.zeros(b, 1, t_max * audio.hop_length)
    for i, (w, s) in enumerate(zip(waves, specs, strict=True)):
        spec[i, :, : s.shape[-1]] = s
        wav[i, 0, : w.shape[0]] = w
    gen = torch.Generator().manual_seed(0)
    text_lengths = torch.tensor([40, 33])
    batch = {
        "ssl": torch.randn(b, 768, t_max, generator=gen),
        "spec": spec,
        "spec_lengths": torch.tensor(frames),
        "wav": wav,
        "text": torch.randint(1, 732, (b, int(text_lengths.max())), generator=gen),
        "text_lengths": text_lengths,
    }
    return {k: v.to(device) for k, v in batch.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", default="v2", choices=["v1", "v2"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast + GradScaler (CUDA only)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    use_amp = bool(args.amp and device.type == "cuda")
    audio = AudioConfig()
    torch.manual_seed(1234)
    net_g = build_generator(args.version, random_codebook=True, seed=1234).to(device).train()
    net_d = build_discriminator(args.version).to(device).train()
    groups = net_g.parameter_groups()  # official groups: text parts at lr * 0.4
    opt_g = torch.optim.AdamW(
        [{"params": ps, "lr": 1e-4 if name == "base" else 1e-4 * 0.4} for name, ps in groups.items()],
        1e-4,
        betas=(0.8, 0.99),
        eps=1e-9,
    )
    opt_d = torch.optim.AdamW(net_d.parameters(), 1e-4, betas=(0.8, 0.99), eps=1e-9)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    batch = load_batch(audio, device)
    seg = net_g.segment_frames
    hop = audio.hop_length

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.float16, enabled=use_amp)

    def g_forward_mel_kl() -> float:
        """G forward + backward on 45*mel + kl only (the official 'G fwd+bwd' measurement)."""
        with autocast():
            out = net_g(
                batch["ssl"], batch["spec"], batch["spec_lengths"], batch["text"], batch["text_lengths"]
            )
            y_mel = slice_segments(spec_to_mel(batch["spec"], audio), out.ids_slice, seg)
            y_hat_mel = mel_spectrogram(out.y_hat.squeeze(1).float(), audio)
        loss = (
            45 * mel_l1_loss(y_mel, y_hat_mel)[0]
            + kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.z_mask)[0]
        )
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        return float(loss.detach())

    def full_step() -> dict[str, float]:
        with autocast():
            out = net_g(
                batch["ssl"], batch["spec"], batch["spec_lengths"], batch["text"], batch["text_lengths"]
            )
            y_mel = slice_segments(spec_to_mel(batch["spec"], audio), out.ids_slice, seg)
            y_hat_mel = mel_spectrogram(out.y_hat.squeeze(1).float(), audio)
            y = slice_segments(batch["wav"], out.ids_slice * hop, seg * hop)
            real, fake, _, _ = net_d(y, out.y_hat.detach())
        loss_disc, _ = discriminator_loss(real, fake)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_disc).backward()
        scaler.unscale_(opt_d)
        scaler.step(opt_d)
        with autocast():
            real, fake, fm_r, fm_g = net_d(y, out.y_hat)
        loss_gen, _ = generator_adversarial_loss(fake)
        loss_fm, _ = feature_matching_loss(fm_r, fm_g)
        loss_mel, _ = mel_l1_loss(y_mel, y_hat_mel)
        loss_kl, _ = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.z_mask)
        total = loss_gen + loss_fm + 45 * loss_mel + loss_kl + out.kl_ssl
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(opt_g)
        scaler.step(opt_g)
        scaler.update()
        values = {"disc": loss_disc, "gen": loss_gen, "fm": loss_fm, "mel(x45)": 45 * loss_mel, "kl": loss_kl}
        values["kl_ssl"] = out.kl_ssl
        return {k: round(float(v.detach()), 4) for k, v in values.items()}

    def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
        """(wall seconds, process CPU seconds, result)."""
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        sync()
        return time.perf_counter() - w0, time.process_time() - c0, result

    first_losses: object = None
    for i in range(args.warmup):
        *_, res = timed(full_step)
        if i == 0:
            first_losses = res
    full = [timed(full_step)[:2] for _ in range(args.runs)]
    timed(g_forward_mel_kl)
    g_only = [timed(g_forward_mel_kl)[:2] for _ in range(args.runs)]

    threads = torch.get_num_threads()
    label = f"{device.type}{' fp16-AMP' if use_amp else ' fp32'}"
    if device.type == "cuda":
        label += f" ({torch.cuda.get_device_name(device)})"
    else:
        label += f" ({threads} threads)"
    print(f"SoVITS {args.version} training step, batch 2 x ~3 s (152 frames, segment 20480), {label}")
    print(f"torch {torch.__version__}; {args.warmup} warm-up step(s) excluded; {args.runs} timed runs each\n")
    print(
        f"| {'measurement':<20} | {'wall median':>11} | {'wall min-max':>15} | {'CPU s median':>12} "
        "| official wall (CPU, 2 cores, fp32) |"
    )
    print(f"|{'-' * 22}|{'-' * 13}|{'-' * 17}|{'-' * 14}|{'-' * 36}|")
    for name, runs in (("G fwd+bwd (mel+KL)", g_only), ("full step (D+G)", full)):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"| {name:<20} | {statistics.median(walls):>9.3f} s | {min(walls):>6.3f}-{max(walls):<6.3f} s "
            f"| {statistics.median(cpus):>10.3f} s | {OFFICIAL_CPU[name]:<34} |"
        )
    print(f"\nwall runs, full step: {', '.join(f'{w:.3f}' for w, _ in full)}")
    print(f"wall runs, G fwd+bwd: {', '.join(f'{w:.3f}' for w, _ in g_only)}")
    print(f"losses of the first step (random init): {first_losses}")


if __name__ == "__main__":
    main()
