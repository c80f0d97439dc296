"""Loss functions against hand-computed values (facts §6.5)."""

from __future__ import annotations

import math

import pytest
import torch

from gptsovits_train.models.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    mel_l1_loss,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor([list(values)])


def test_discriminator_loss_hand_computed() -> None:
    # D0: real [1, 0.5] -> ((0)^2 + (0.5)^2)/2 = 0.125 ; fake [0.5, -1] -> (0.25 + 1)/2 = 0.625
    # D1: real [0]      -> 1                        ; fake [2]       -> 4
    total, parts = discriminator_loss([t(1.0, 0.5), t(0.0)], [t(0.5, -1.0), t(2.0)])
    assert total.item() == pytest.approx(0.125 + 0.625 + 1 + 4)
    assert parts["real/0"].item() == pytest.approx(0.125)
    assert parts["fake/1"].item() == pytest.approx(4.0)
    assert total.dtype == torch.float32


def test_generator_adversarial_loss_hand_computed() -> None:
    # (1-0.5)^2=0.25, (1+1)^2=4 -> mean 2.125 ; (1-3)^2 = 4
    total, parts = generator_adversarial_loss([t(0.5, -1.0), t(3.0)])
    assert total.item() == pytest.approx(6.125)
    assert parts["gen/0"].item() == pytest.approx(2.125)


def test_feature_matching_includes_factor_two_and_detaches_real() -> None:
    real = [[torch.tensor([[1.0, 2.0]], requires_grad=True), torch.tensor([[0.0]], requires_grad=True)]]
    fake = [[torch.tensor([[0.0, 4.0]], requires_grad=True), torch.tensor([[-3.0]], requires_grad=True)]]
    # layer means: (1 + 2)/2 = 1.5 and 3 -> sum 4.5 -> x2 = 9
    total, parts = feature_matching_loss(real, fake)
    assert total.item() == pytest.approx(9.0)
    assert parts["fm/0"].item() == pytest.approx(9.0)
    total.backward()
    assert real[0][0].grad is None and real[0][1].grad is None
    assert fake[0][0].grad is not None
    # d/dg of 2*mean|r-g| over 2 elements = 2 * sign(g-r)/2 = sign(g - r)
    assert fake[0][0].grad.tolist() == [[-1.0, 1.0]]


def test_mel_l1_loss_is_unweighted_mean_abs() -> None:
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    b = torch.tensor([[[0.0, 2.0], [5.0, 3.0]]])
    total, _ = mel_l1_loss(a, b)
    assert total.item() == pytest.approx((1 + 0 + 2 + 1) / 4)
    with pytest.raises(ValueError, match="shapes differ"):
        mel_l1_loss(a, b[..., :1])


def test_kl_loss_hand_computed_with_mask() -> None:
    # one channel, two frames, second frame masked out
    z_p = torch.tensor([[[1.0, 5.0]]])
    m_p = torch.tensor([[[0.0, 0.0]]])
    logs_p = torch.tensor([[[math.log(2.0), 0.0]]])
    logs_q = torch.tensor([[[0.5, 9.0]]])
    mask = torch.tensor([[[1.0, 0.0]]])
    # frame 0: ln2 - 0.5 - 0.5 + 0.5 * 1 / 4
    expected = math.log(2.0) - 1.0 + 0.125
    total, parts = kl_loss(z_p, logs_q, m_p, logs_p, mask)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert parts["kl"].item() == pytest.approx(expected, rel=1e-6)


def test_kl_loss_sums_channels_and_averages_valid_frames() -> None:
    g = torch.Generator().manual_seed(0)
    z_p, m_p, logs_p, logs_q = (torch.randn(2, 3, 4, generator=g) for _ in range(4))
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]])
    total, _ = kl_loss(z_p, logs_q, m_p, logs_p, mask)
    acc = 0.0
    for b in range(2):
        for c in range(3):
            for f in range(4):
                if mask[b, 0, f]:
                    lp, lq = logs_p[b, c, f].item(), logs_q[b, c, f].item()
                    d = z_p[b, c, f].item() - m_p[b, c, f].item()
                    acc += lp - lq - 0.5 + 0.5 * d * d * math.exp(-2 * lp)
    assert total.item() == pytest.approx(acc / 5, rel=1e-5)


def test_losses_are_fp32_for_half_inputs() -> None:
    total, _ = generator_adversarial_loss([t(0.5, -1.0).half()])
    assert total.dtype == torch.float32 and total.item() == pytest.approx(2.125)
