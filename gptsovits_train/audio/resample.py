"""Windowed-sinc resampling in plain torch, numerically the same as torchaudio's `Resample` defaults.

The official speaker-verification stage (v2Pro/v2ProPlus, `7-sv_cn`) resamples the 32 kHz training copy
to 16 kHz with ``torchaudio.transforms.Resample(32000, 16000)`` at its defaults (Hann-windowed sinc,
``lowpass_filter_width=6``, ``rolloff=0.99``). torchaudio is not a dependency here, so this module
rebuilds the same kernel and the same strided convolution (facts: `v2pro-facts.md` §2.1):

- reduce the rates by their gcd: ``orig, new`` (32000 → 16000 gives 2 → 1);
- cutoff ``base = min(orig, new) * rolloff``; half-width ``w = ceil(lowpass_filter_width * orig / base)``;
- for output phase ``p`` in ``0..new-1`` and tap ``j`` in ``-w .. w+orig-1``:
  ``t = clamp((j / orig - p / new) * base, ±lowpass_filter_width)`` (``p / new`` in float32),
  ``k = sinc(pi t) * cos(pi t / lowpass_filter_width / 2)^2 * base / orig`` — computed in float64 in
  that order of operations, then cast to float32 (32 k → 16 k: 28 taps);
- ``y = conv1d(pad(x, (w, w + orig)), k, stride=orig)``, phases interleaved, cut to ``ceil(new*N/orig)``.

This is not the soxr resampler that the HuBERT stage uses (`audio/io.resample`, as librosa does).
The fixture `sv_fixture.npz` checks the kernel and the output (bitwise on the CPU build tested).
"""

from __future__ import annotations

import functools
import logging
import math

import torch
import torch.nn.functional as F

LOG = logging.getLogger(__name__)

#: torchaudio `Resample` defaults used by the official sv stage.
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


@functools.lru_cache(maxsize=8)
def _kernel_cpu(orig: int, new: int, lowpass_filter_width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    taps = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig  # (1, 1, K)
    # torchaudio divides the phase offsets in the default float32, then adds the float64 taps
    phases = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new  # (new, 1, 1)
    t = (phases + taps) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0, dtype=torch.float64), t.sin() / t)
    kernel = kernel * (window * (base / orig))
    return kernel.to(torch.float32), width


def sinc_kernel(
    orig_rate: int,
    new_rate: int,
    *,
    lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
    rolloff: float = ROLLOFF,
) -> tuple[torch.Tensor, int]:
    """The Hann-windowed sinc kernel of a rate pair.

    Returns:
        (kernel, width): kernel (new, 1, 2*width + orig) float32 on the CPU, with ``orig, new`` the rates
        divided by their gcd; `width` the left padding.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    g = math.gcd(int(orig_rate), int(new_rate))
    kernel, width = _kernel_cpu(int(orig_rate) // g, int(new_rate) // g, lowpass_filter_width, rolloff)
    return kernel.clone(), width


def sinc_resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample like ``torchaudio.transforms.Resample(orig_rate, new_rate)`` (default arguments).

    Args:
        wave: (..., N) float tensor (any device; float16 input is computed in its own dtype, like
            torchaudio, so pass float32 for the official fp32 resample).
        orig_rate, new_rate: rates in Hz.
    Returns:
        (..., ceil(new * N / orig)) with the rates reduced by their gcd; `wave` itself when the rates
        are equal.
    """
    if orig_rate == new_rate:
        return wave
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    kernel, width = sinc_kernel(orig_rate, new_rate)
    kernel = kernel.to(device=wave.device, dtype=wave.dtype)
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1])
    n = flat.shape[-1]
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig)  # (B, new, frames)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * n / orig)
    return out[..., :target].reshape(*shape[:-1], -1)
