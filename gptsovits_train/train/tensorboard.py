"""TensorBoard events of a run: scalars, mel-spectrogram images and validation audio (32 kHz)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOG = logging.getLogger(__name__)


def mel_to_image(mel: np.ndarray | torch.Tensor) -> np.ndarray:
    """Colour-map a log-mel `(n_mels, T)` to an `(n_mels, T, 3)` uint8 image, low bins at the bottom."""
    import matplotlib

    arr = (
        mel.detach().float().cpu().numpy()
        if isinstance(mel, torch.Tensor)
        else np.asarray(mel, dtype=np.float32)
    )
    if arr.ndim != 2:
        raise ValueError(f"mel must be (n_mels, T), got {arr.shape}")
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    norm = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    rgb = matplotlib.colormaps["viridis"](norm[::-1])[..., :3]
    return (rgb * 255).astype(np.uint8)


class TensorBoardLogger:
    """Thin wrapper over `SummaryWriter`; every method is a no-op when `enabled` is False.

    Args:
        log_dir: the run's `tb/` folder.
        enabled: False on DDP ranks other than 0 or with `train.tensorboard: false`.
        purge_step: on resume, events at or after this step left by the interrupted run are discarded.
    """

    def __init__(self, log_dir: Path | str, *, enabled: bool = True, purge_step: int | None = None) -> None:
        self.enabled = enabled
        self.writer: Any = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), global_step=step)

    def mel_image(self, tag: str, mel: np.ndarray | torch.Tensor, step: int) -> None:
        if self.writer is None:
            return
        self.writer.add_image(tag, mel_to_image(mel), global_step=step, dataformats="HWC")

    def audio(self, tag: str, wave: np.ndarray | torch.Tensor, step: int, sample_rate: int) -> None:
        """`wave`: (L,) float in [-1, 1]."""
        if self.writer is None:
            return
        data = wave.detach().cpu() if isinstance(wave, torch.Tensor) else torch.as_tensor(wave)
        data = torch.nan_to_num(data.float().reshape(1, -1), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)
        self.writer.add_audio(tag, data, global_step=step, sample_rate=sample_rate)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
