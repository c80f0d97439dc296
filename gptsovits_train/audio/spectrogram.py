"""Linear spectrogram and log-mel exactly as the official `module/mel_processing.py` computes them.

- spectrogram: reflect-pad (n_fft - hop)/2 on both sides, `torch.stft(center=False)` with a periodic Hann
  window, magnitude `sqrt(|X|^2 + 1e-8)`; shape (B, n_fft//2+1, floor(L / hop)). No log.
- mel: `librosa.filters.mel` (Slaney scale and norm) @ spectrogram, then `log(clamp(x, 1e-5))`.

Windows and filterbanks are cached per (parameters, device, dtype).
"""

from __future__ import annotations

import functools
import logging

import librosa
import numpy as np
import torch

from gptsovits_train.config import AudioConfig

LOG = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _hann(win_length: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(win_length, periodic=True, device=device, dtype=dtype)


@functools.lru_cache(maxsize=16)
def _mel_basis_np(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _mel_basis(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, device: str, dtype: torch.dtype
) -> torch.Tensor:
    return torch.from_numpy(_mel_basis_np(sr, n_fft, n_mels, fmin, fmax)).to(device=device, dtype=dtype)


def mel_filterbank(cfg: AudioConfig) -> np.ndarray:
    """(n_mels, n_fft//2+1) Slaney mel filterbank, float32."""
    return _mel_basis_np(cfg.sampling_rate, cfg.filter_length, cfg.n_mel_channels, cfg.mel_fmin, cfg.mel_fmax)


def spectrogram(wave: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """Linear magnitude spectrogram.

    Args:
        wave: (B, L) or (L,) float waveform in [-1, 1].
    Returns:
        (B, n_fft//2+1, floor(L / hop)) (or without B for 1-D input), same dtype as `wave`.
    """
    squeeze = wave.dim() == 1
    if squeeze:
        wave = wave.unsqueeze(0)
    if wave.dim() != 2:
        raise ValueError(f"wave must be (B, L) or (L,), got {tuple(wave.shape)}")
    n_fft, hop, win = cfg.filter_length, cfg.hop_length, cfg.win_length
    pad = (n_fft - hop) // 2
    if wave.shape[-1] <= pad:
        raise ValueError(f"wave of {wave.shape[-1]} samples is too short for a reflect pad of {pad}")
    padded = torch.nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = _hann(win, str(wave.device), wave.dtype)
    stft = torch.stft(
        padded,
        n_fft,
        hop_length=hop,
        win_length=win,
        window=window,
        center=False,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    # |X| first, then squared: the noise-floor bins (power ~1e-8) only match the official numbers this way.
    spec = torch.sqrt(stft.abs().square() + 1e-8)
    return spec.squeeze(0) if squeeze else spec


def spec_to_mel(spec: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """Log-mel from a linear spectrogram: (..., n_freq, T) -> (..., n_mels, T), natural log, floor 1e-5."""
    basis = _mel_basis(
        cfg.sampling_rate,
        cfg.filter_length,
        cfg.n_mel_channels,
        cfg.mel_fmin,
        cfg.mel_fmax,
        str(spec.device),
        spec.dtype,
    )
    mel = torch.matmul(basis, spec)
    return torch.log(torch.clamp(mel, min=1e-5))


def mel_spectrogram(wave: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """Log-mel straight from a waveform: (B, L) -> (B, n_mels, floor(L / hop))."""
    return spec_to_mel(spectrogram(wave, cfg), cfg)


def n_frames(n_samples: int, cfg: AudioConfig) -> int:
    """Spectrogram frame count of a clip of `n_samples` samples."""
    return n_samples // cfg.hop_length
