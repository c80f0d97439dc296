"""Numeric precision of a run: `auto | fp32 | fp16 | bf16`.

- `auto`: bf16 autocast on GPUs that support it, fp16 autocast with a grad scaler on older GPUs, fp32 on CPU.
- `fp16` needs CUDA and always uses a `GradScaler` (one scaler shared by both optimizers, as official).
- `bf16` works on CUDA and CPU (autocast), without a scaler.
Losses are always computed in fp32 (autocast disabled around them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import torch

from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "bf16"]


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """The precision a run uses on `device` for the configured `requested` value."""
    if requested == "fp32":
        return "fp32"
    if device.type != "cuda":
        if requested == "fp16":
            raise GsvError("train.precision fp16 needs a CUDA device (use fp32 or bf16 on CPU)")
        return "bf16" if requested == "bf16" else "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise GsvError(
            f"train.precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16"
        )
    return "fp16" if requested == "fp16" else "bf16"


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Mixed-precision region (a no-op for fp32)."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast (losses are fp32)."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def make_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """The grad scaler: enabled for fp16 only (otherwise every call is a no-op)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
