"""Kaldi-compatible log mel filterbank in plain torch, with the parameters of the official sv stage.

The official v2Pro/v2ProPlus speaker-verification feature calls its vendored copy of
``torchaudio.compliance.kaldi.fbank(wav16k[None], num_mel_bins=80, sample_frequency=16000, dither=0)``
with everything else at its default (facts: `v2pro-facts.md` §2.2). Those values are fixed here:

- frames of 400 samples every 160 (25 / 10 ms), ``snip_edges``: ``T = 1 + (N - 400) // 160``;
- per frame, in this order: remove the frame mean (DC), pre-emphasis 0.97 within the frame
  (``x[j] - 0.97 x[max(j-1, 0)]``), povey window ``hann(400, periodic=False) ** 0.85``, zero-pad to
  512, rfft, power ``|X|^2`` (257 bins);
- 80 triangular mel filters between 20 Hz and 8000 Hz on ``1127 ln(1 + f / 700)``, built over the first
  256 FFT bins (the Nyquist bin gets weight 0), applied as a matrix product;
- ``log(max(energy, float32 eps))``; no dither, no energy term, no mean or variance normalisation.

The input is the float wave in [-1, 1] (not rescaled to the int16 range). `sv_fixture.npz` checks the mel
banks, the window and the output (bitwise on the CPU build tested).
"""

from __future__ import annotations

import functools
import logging
import math

import torch
import torch.nn.functional as F

LOG = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
N_FFT = 512  # next power of two of FRAME_LENGTH
NUM_MEL_BINS = 80
LOW_FREQ = 20.0
PREEMPHASIS = 0.97
POVEY_POWER = 0.85
#: the float32 machine epsilon that Kaldi floors energies at before the log
ENERGY_FLOOR = float(torch.finfo(torch.float32).eps)


def _mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def povey_window(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """(400,) Kaldi's povey window: a symmetric Hann window raised to the power 0.85 (computed in `dtype`
    on `device`, as Kaldi's port does)."""
    return torch.hann_window(FRAME_LENGTH, periodic=False, dtype=dtype, device=device).pow(POVEY_POWER)


@functools.lru_cache(maxsize=2)
def _mel_banks_cpu() -> torch.Tensor:
    num_fft_bins = N_FFT // 2
    nyquist = 0.5 * SAMPLE_RATE
    bin_width = SAMPLE_RATE / N_FFT
    mel_low = _mel(LOW_FREQ)
    mel_high = _mel(nyquist)  # high_freq 0 means the Nyquist frequency
    delta = (mel_high - mel_low) / (NUM_MEL_BINS + 1)
    idx = torch.arange(NUM_MEL_BINS).unsqueeze(1)  # int64, promoted like Kaldi's port does
    left = mel_low + idx * delta
    center = mel_low + (idx + 1.0) * delta
    right = mel_low + (idx + 2.0) * delta
    mel = 1127.0 * (1.0 + (bin_width * torch.arange(float(num_fft_bins))) / 700.0).log()
    mel = mel.unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down))


def mel_banks() -> torch.Tensor:
    """(80, 256) float32 triangular mel filters over FFT bins 0..255 (Kaldi `get_mel_banks`)."""
    return _mel_banks_cpu().clone()


def num_frames(n_samples: int) -> int:
    """Frames of a 16 kHz wave of `n_samples` samples (0 when shorter than one 400-sample frame)."""
    if n_samples < FRAME_LENGTH:
        return 0
    return 1 + (n_samples - FRAME_LENGTH) // FRAME_SHIFT


def kaldi_fbank(wave16k: torch.Tensor) -> torch.Tensor:
    """80-bin Kaldi log mel filterbank of one 16 kHz wave.

    Args:
        wave16k: (N,) float tensor in [-1, 1], N >= 400 (float32 for the official CPU numerics; the
            computation runs in the tensor's dtype and device).
    Returns:
        (T, 80) log mel energies, T = 1 + (N - 400) // 160.
    Raises:
        ValueError: not 1-D, or shorter than one frame.
    """
    if wave16k.ndim != 1:
        raise ValueError(f"kaldi_fbank takes a (N,) wave, got shape {tuple(wave16k.shape)}")
    if wave16k.shape[0] < FRAME_LENGTH:
        raise ValueError(
            f"a wave of {wave16k.shape[0]} samples is shorter than one {FRAME_LENGTH}-sample frame"
        )
    dtype, device = wave16k.dtype, wave16k.device
    frames = wave16k.unfold(0, FRAME_LENGTH, FRAME_SHIFT)  # (T, 400)
    frames = frames - frames.mean(dim=1).unsqueeze(1)
    previous = F.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)[:, :-1]
    frames = frames - PREEMPHASIS * previous
    frames = frames * povey_window(dtype, device).unsqueeze(0)
    frames = F.pad(frames.unsqueeze(0), (0, N_FFT - FRAME_LENGTH), mode="constant", value=0.0).squeeze(0)
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (T, 257)
    banks = F.pad(mel_banks().to(device=device, dtype=dtype), (0, 1), mode="constant", value=0.0)
    energies = torch.mm(power, banks.T)  # (T, 80)
    floor = torch.tensor(ENERGY_FLOOR, device=device, dtype=dtype)
    return torch.max(energies, floor).log()
