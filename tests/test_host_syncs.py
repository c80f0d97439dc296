"""The per-step helpers of the SoVITS forward must not synchronise the host with the device.

On a GPU every `.item()`, `bool(tensor)`, `int(tensor)` or `.tolist()` waits for all queued kernels; the
training step calls `slice_segments` several times and the quantizer once per forward. On CPU such a call
cannot be observed as a stall, so these tests make every host read of a tensor raise instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from gptsovits_train.models.commons import slice_segments
from gptsovits_train.models.quantizer import ResidualVectorQuantizer


class HostSyncError(AssertionError):
    pass


@contextmanager
def no_host_reads() -> Iterator[None]:
    """Make the tensor-to-Python conversions that synchronise a GPU raise `HostSyncError`."""

    def forbid(*_args: object, **_kwargs: object) -> None:
        raise HostSyncError("a tensor was read on the host")

    names = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")
    saved = {name: getattr(torch.Tensor, name) for name in names}
    try:
        for name in names:
            setattr(torch.Tensor, name, forbid)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def test_the_guard_catches_a_host_read() -> None:
    with no_host_reads(), pytest.raises(HostSyncError):
        torch.ones(2).sum().item()


def test_slice_segments_reads_nothing_on_the_host() -> None:
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    with no_host_reads():
        out = slice_segments(x, torch.tensor([1, 8]), 4)
    assert torch.equal(out[0], x[0, :, 1:5])
    # past the end reads as zeros: hand-built expectation
    assert torch.equal(out[1], torch.cat([x[1, :, 8:10], torch.zeros(3, 2)], dim=1))


def test_slice_segments_zeros_past_the_end_even_if_the_last_frame_is_not_finite() -> None:
    x = torch.zeros(1, 1, 4)
    x[0, 0, 3] = float("inf")
    out = slice_segments(x, torch.tensor([2]), 4)
    assert out.tolist() == [[[0.0, float("inf"), 0.0, 0.0]]]


def test_slice_segments_still_refuses_a_negative_start() -> None:
    with pytest.raises(RuntimeError, match="negative start"):
        slice_segments(torch.zeros(1, 1, 4), torch.tensor([-1]), 2)


def test_slice_segments_gradient_reaches_only_the_window() -> None:
    x = torch.randn(1, 2, 6, requires_grad=True)
    slice_segments(x, torch.tensor([4]), 4).sum().backward()
    assert x.grad is not None
    expected = torch.zeros(1, 2, 6)
    expected[..., 4:] = 1.0
    assert torch.equal(x.grad, expected)


def test_quantizer_reads_its_flag_once_then_never_again() -> None:
    q = ResidualVectorQuantizer(dimension=8, n_q=1, bins=16)
    q.initialize_random_(torch.Generator().manual_seed(0))
    x = torch.randn(2, 8, 5)
    _, codes_first, _ = q(x)  # first forward reads `inited` once
    with no_host_reads():
        _, codes, _ = q(x)
    assert torch.equal(codes, codes_first)


def test_quantizer_notices_a_state_dict_that_clears_the_flag() -> None:
    q = ResidualVectorQuantizer(dimension=8, n_q=1, bins=16)
    q.initialize_random_(torch.Generator().manual_seed(0))
    assert q.is_initialized()
    q.load_state_dict(ResidualVectorQuantizer(dimension=8, n_q=1, bins=16).state_dict())
    assert not q.is_initialized()
