"""Deterministic validation of a SoVITS generator on the held-out split.

For every validation clip (one at a time, so a clip's numbers never depend on its batch-mates):

- `val/mel`: the inference path a user hears — codes from the clip's HuBERT features (`extract_latent`), its
  phonemes and its own spectrogram as the reference go through `G.infer` (noise `train.val_noise_scale`,
  default 0 = prior mean) to audio; the L1 distance between that audio's log-mel and the clip's log-mel over
  the first `2 * (T // 2)` frames (frame-aligned: the inference output covers exactly those frames).
- `val/recon`: the training reconstruction loss — the training forward (posterior path, 32-frame window),
  mel L1 of the window (without the 45x weight).
- `val/kl`: the training KL term on the clip.
- `val/total`: `c_mel * val/recon + c_kl * val/kl`, the non-adversarial part of the generator's training
  loss (adversarial terms depend on the discriminator and say nothing about quality).

Each metric is a mean over clips. Determinism: the model is in eval mode, and every random draw of clip i
(posterior noise, window start, prior noise) comes from a generator seeded with `seed + i` — i the clip's
index in the whole validation list — so the same weights always give the same numbers, in one process or
sharded over DDP ranks (sums are reduced across ranks). The global RNG is never touched.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from gptsovits_train.audio.spectrogram import mel_spectrogram, spec_to_mel
from gptsovits_train.config import AudioConfig, TrainConfig
from gptsovits_train.models.commons import slice_segments
from gptsovits_train.models.losses import kl_loss, mel_l1_loss
from gptsovits_train.train.dataset import Sample, SoVITSDataset, collate
from gptsovits_train.train.distributed import DistContext, all_reduce_sum
from gptsovits_train.train.precision import Precision, autocast, full_precision
from gptsovits_train.train.signals import ignore_stop_signals
from gptsovits_train.train.stage import ValResult, ValSample

LOG = logging.getLogger(__name__)

METRICS = ("val/mel", "val/recon", "val/kl")


def _one(items: list[tuple[int, Sample]]) -> tuple[int, Sample]:
    return items[0]


class _Indexed(torch.utils.data.Dataset[tuple[int, Sample]]):
    """(global index, sample) pairs of a validation shard."""

    def __init__(self, dataset: SoVITSDataset, indices: list[int]) -> None:
        self.inner = Subset(dataset, indices)
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Sample]:
        return self.indices[i], self.inner[i]


def validation_loader(
    dataset: SoVITSDataset, indices: list[int], *, num_workers: int
) -> DataLoader[tuple[int, Sample]]:
    """Clips of this rank's shard, one by one, in order (its own generator: the global RNG is untouched)."""
    return DataLoader(
        _Indexed(dataset, indices),
        batch_size=1,
        shuffle=False,
        collate_fn=_one,
        num_workers=min(num_workers, 2),
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=ignore_stop_signals,
    )


@torch.no_grad()
def validate(
    generator: torch.nn.Module,
    loader: DataLoader[tuple[int, Sample]],
    *,
    audio: AudioConfig,
    train: TrainConfig,
    device: torch.device,
    precision: Precision,
    ctx: DistContext,
    n_samples: int = 0,
) -> ValResult:
    """Validate `generator` (the bare module, not the DDP wrapper) on this rank's shard; reduce over ranks.

    Returns the mean metrics over all validation clips of all ranks (identical on every rank), plus up to
    `n_samples` audio/mel samples of this rank's first clips.
    """
    G: Any = generator
    was_training = G.training
    G.eval()
    hop = audio.hop_length
    seg_frames = int(G.segment_frames)
    sums = torch.zeros(len(METRICS) + 1, dtype=torch.float64)
    samples: list[ValSample] = []
    try:
        for index, sample in loader:
            rng = torch.Generator(device=device)
            rng.manual_seed(train.seed + index)
            batch = collate([sample]).to(device)
            t = int(batch.spec_lengths[0])
            t_even = 2 * (t // 2)
            with autocast(device, precision):
                # Inference path: codes + phonemes + the clip's own (unpadded) spectrogram as reference.
                codes = G.extract_latent(batch.ssl[:, :, :t_even])
                wave = G.infer(
                    codes,
                    batch.text,
                    batch.text_lengths,
                    batch.spec[:, :, :t],
                    noise_scale=train.val_noise_scale,
                    generator=rng,
                )
                # Training path: posterior reconstruction of a (seeded) random window.
                out = G(
                    batch.ssl, batch.spec, batch.spec_lengths, batch.text, batch.text_lengths, generator=rng
                )
            with full_precision(device):
                wave32 = wave.float().squeeze(1)  # (1, 2*(t//2)*hop)
                mel_hat = mel_spectrogram(wave32, audio)  # (1, n_mels, F)
                n = min(mel_hat.shape[-1], t_even)
                mel_ref = spec_to_mel(batch.spec[:, :, :n].float(), audio)
                val_mel, _ = mel_l1_loss(mel_ref, mel_hat[:, :, :n])
                y_mel = spec_to_mel(slice_segments(batch.spec.float(), out.ids_slice, seg_frames), audio)
                y_hat_mel = mel_spectrogram(out.y_hat.float().squeeze(1), audio)
                recon, _ = mel_l1_loss(y_mel, y_hat_mel[:, :, :seg_frames])
                kl, _ = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.z_mask)
            sums += torch.tensor([val_mel.item(), recon.item(), kl.item(), 1.0], dtype=torch.float64)
            if len(samples) < n_samples:
                samples.append(
                    ValSample(
                        clip_id=batch.clip_ids[0],
                        audio=wave32[0, : n * hop].cpu(),
                        mel=mel_hat[0, :, :n].cpu(),
                        target_mel=mel_ref[0].cpu(),
                    )
                )
    finally:
        G.train(was_training)
    if ctx.distributed:
        reduced = sums.to(device if device.type == "cuda" else "cpu")
        sums = all_reduce_sum(reduced, ctx).cpu()
    count = float(sums[-1])
    if count == 0:
        raise RuntimeError("validation ran on zero clips")
    metrics = {name: float(sums[i]) / count for i, name in enumerate(METRICS)}
    metrics["val/total"] = train.c_mel * metrics["val/recon"] + train.c_kl * metrics["val/kl"]
    return ValResult(metrics=metrics, n_clips=int(count), samples=samples, sample_rate=audio.sampling_rate)
