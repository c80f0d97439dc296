"""Building blocks checked against independent, naive formulas."""

from __future__ import annotations

import math

import pytest
import torch

from gptsovits_train.models.attention import MultiHeadAttention
from gptsovits_train.models.commons import rand_slice_segments, sequence_mask, slice_segments
from gptsovits_train.models.flow import ResidualCouplingBlock


def naive_relative_attention(mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Loop version of VITS relative-position attention (window W, shared tables), from its definition:
    score(i, j) = q_i.k_j/sqrt(d) + q_i.E_k[j-i+W]/sqrt(d) for |j-i| <= W; masked (mask 0) -> -1e4;
    out_i = sum_j p(i, j) (v_j + E_v[j-i+W] if |j-i| <= W)."""
    b, c, t = x.shape
    h, d, w = mha.n_heads, mha.k_channels, mha.window_size
    assert w is not None and mha.emb_rel_k is not None and mha.emb_rel_v is not None
    q = mha.conv_q(x).view(b, h, d, t)
    k = mha.conv_k(x).view(b, h, d, t)
    v = mha.conv_v(x).view(b, h, d, t)
    ek, ev = mha.emb_rel_k[0], mha.emb_rel_v[0]
    out = torch.zeros(b, h, d, t)
    for bi in range(b):
        for hi in range(h):
            for i in range(t):
                scores = torch.empty(t)
                for j in range(t):
                    s = q[bi, hi, :, i] @ k[bi, hi, :, j]
                    if abs(j - i) <= w:
                        s = s + q[bi, hi, :, i] @ ek[j - i + w]
                    s = s / math.sqrt(d)
                    if mask[bi, i] * mask[bi, j] == 0:
                        s = torch.tensor(-1e4)
                    scores[j] = s
                p = torch.softmax(scores, 0)
                for j in range(t):
                    val = v[bi, hi, :, j] + (ev[j - i + w] if abs(j - i) <= w else 0)
                    out[bi, hi, :, i] += p[j] * val
    return mha.conv_o(out.reshape(b, c, t))


@pytest.mark.parametrize("t", [3, 11])
def test_relative_attention_matches_the_definition(t: int) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 8, 2, window_size=4).eval()
    x = torch.randn(2, 8, t)
    lengths = torch.tensor([t, max(1, t - 4)])
    mask = sequence_mask(lengths, t).float()
    attn_mask = mask.unsqueeze(1).unsqueeze(2) * mask.unsqueeze(1).unsqueeze(-1)
    with torch.no_grad():
        ours = mha(x, x, attn_mask)
        ref = naive_relative_attention(mha, x, mask)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_slice_segments_matches_python_slicing_and_zero_pads() -> None:
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    ids = torch.tensor([2, 7])
    out = slice_segments(x, ids, 4)
    assert torch.equal(out[0], x[0, :, 2:6])
    assert torch.equal(out[1, :, :3], x[1, :, 7:10])
    assert torch.equal(out[1, :, 3:], torch.zeros(3, 1))


def test_rand_slice_segments_stays_inside_valid_lengths() -> None:
    x = torch.randn(64, 2, 50)
    lengths = torch.randint(10, 51, (64,))
    gen = torch.Generator().manual_seed(0)
    out, ids = rand_slice_segments(x, lengths, 8, gen)
    assert ids.dtype == torch.int64 and out.shape == (64, 2, 8)
    assert bool(((ids >= 0) & (ids + 8 <= lengths)).all())
    for b in range(64):
        assert torch.equal(out[b], x[b, :, ids[b] : ids[b] + 8])
    _, ids2 = rand_slice_segments(x, lengths, 8, torch.Generator().manual_seed(0))
    assert torch.equal(ids, ids2)


def test_flow_reverse_inverts_forward() -> None:
    torch.manual_seed(0)
    flow = ResidualCouplingBlock(8, 16, 5, 1, 2, n_flows=4, gin_channels=4)
    for layer in flow.flows[::2]:  # make the couplings non-trivial (post is zero-initialised)
        torch.nn.init.normal_(layer.post.weight, std=0.1)
    x = torch.randn(2, 8, 12)
    mask = sequence_mask(torch.tensor([12, 9]), 12).unsqueeze(1).float()
    x = x * mask
    g = torch.randn(2, 4, 1)
    with torch.no_grad():
        z = flow(x, mask, g=g)
        back = flow(z, mask, g=g, reverse=True)
    assert not torch.allclose(z, x)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-5)
