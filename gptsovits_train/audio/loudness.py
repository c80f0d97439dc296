"""Official loudness handling of GPT-SoVITS, as pure functions on float waveforms in [-1, 1].

Two places in the official pipeline change the level of a clip:

- Slicing (`tools/slice_audio.py`), for every chunk the slicer cuts: if the peak exceeds 1 the chunk is
  divided by its peak, then mixed ``chunk / peak * (max_peak * alpha) + (1 - alpha) * chunk``
  (web-UI defaults `max_peak` 0.9, `alpha` 0.25).
- The training copy (`prepare_datasets/2-get-hubert-wav32k.py`, folder `5-wav32k`), for every clip:
  files whose peak exceeds 2.2 are skipped, the rest are written as
  ``x / peak * (0.95 * 0.5) + 0.5 * x``: a 50/50 mix of the clip peak-normalised to 0.95 and itself.

`apply_slice_mix` and `apply_wav32k_mix` implement the two mixes. One deliberate difference: the
official slicer divides an over-full chunk by its peak but then mixes with the *old* peak (so such a
chunk ends up quieter than the rest); here the mix uses the peak after the repair, 1.0.
"""

from __future__ import annotations

import logging

import numpy as np

LOG = logging.getLogger(__name__)


def peak(samples: np.ndarray) -> float:
    """max |x| of a (L,) waveform (0.0 for an empty one)."""
    return float(np.max(np.abs(samples))) if samples.size else 0.0


def repair_peak(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Divide by the peak when it exceeds 1.0 (the official repair). Returns (audio, peak before)."""
    p = peak(samples)
    if p > 1.0:
        return (samples / np.float32(p)).astype(np.float32), p
    return samples, p


def peak_mix(samples: np.ndarray, target_peak: float, alpha: float) -> np.ndarray:
    """``x / peak * (target_peak * alpha) + (1 - alpha) * x``; a silent input is returned unchanged.

    Args:
        samples: (L,) float32 waveform.
    Returns:
        (L,) float32; its peak is ``target_peak * alpha + (1 - alpha) * peak``.
    """
    p = peak(samples)
    if p == 0.0:
        return samples
    scale = np.float32(target_peak * alpha / p + (1.0 - alpha))
    return (samples * scale).astype(np.float32)


def apply_slice_mix(samples: np.ndarray, max_peak: float = 0.9, alpha: float = 0.25) -> np.ndarray:
    """Slicing post-processing of one chunk: repair peaks above 1, then the peak mix."""
    repaired, _ = repair_peak(samples)
    return peak_mix(repaired, max_peak, alpha)


def apply_wav32k_mix(samples: np.ndarray, target_peak: float = 0.95, alpha: float = 0.5) -> np.ndarray:
    """Training-copy mix (`5-wav32k`) of one clip whose peak is at most 1."""
    return peak_mix(samples, target_peak, alpha)
