"""Loss values on hand-computed cases: NT-Xent, CMC's NCE softmax and bank update, AMDIM's clipped NCE,
the Gaussian KL."""

import math

import pytest
import torch

from selfstudy.methods.losses import (amdim_nce, amdim_nce_scaled, gaussian_kl, momentum_rows, nce_softmax,
                                      nt_xent, tanh_clip)


# ------------------------------------------------------------------------------------------- NT-Xent

@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_identical_views_orthogonal_embeddings(temperature):
    # Each sample's positive has similarity 1, its 2N - 2 negatives 0:
    # loss = -log(e^{1/T} / (e^{1/T} + 2N - 2)) = log(1 + (2N - 2) e^{-1/T}).
    n = 3
    z = torch.eye(4)[:n]
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / temperature))
    assert nt_xent(z, z.clone(), temperature).item() == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_nt_xent_symmetric_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert nt_xent(a, b, 0.2).item() == pytest.approx(nt_xent(b, a, 0.2).item(), rel=1e-6)
    assert nt_xent(3 * a, b, 0.2).item() == pytest.approx(nt_xent(a, b, 0.2).item(), rel=1e-5)


def test_nt_xent_prefers_matching_views():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 16, generator=g)
    assert nt_xent(a, a, 0.5) < nt_xent(a, a[torch.randperm(6, generator=g)], 0.5)


def test_nt_xent_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(3, 4), torch.zeros(2, 4), 0.5)


# ------------------------------------------------------------------------------------------ CMC NCE

def test_nce_softmax_hand_built():
    # anchor e1, positive e1, negatives e2 and -e1 at T = 0.5: logits (2, 0, -2), target 0.
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    negatives = torch.cat([e2, -e1])
    expected = math.log(1 + math.exp(-2) + math.exp(-4))
    assert nce_softmax(e1, e1, negatives, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_nce_softmax_shared_and_per_anchor_negatives_agree():
    g = torch.Generator().manual_seed(0)
    a, p, neg = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(5, 8, generator=g)
    shared = nce_softmax(a, p, neg, 0.1)
    per_anchor = nce_softmax(a, p, neg.expand(4, 5, 8), 0.1)
    assert shared.item() == pytest.approx(per_anchor.item(), rel=1e-6)


def test_momentum_rows_exact():
    old = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    new = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    out = momentum_rows(old, new, 0.2)
    norm = math.sqrt(0.2 ** 2 + 0.8 ** 2)
    assert torch.allclose(out[0], torch.tensor([0.2 / norm, 0.8 / norm]))
    assert torch.allclose(out[1], torch.tensor([0.0, 1.0]))  # old == new: unchanged
    assert torch.allclose(momentum_rows(old, new, 0.0), new)  # m = 0 takes the new embedding


# ---------------------------------------------------------------------------------------- AMDIM NCE

def test_tanh_clip_bounds_and_near_identity():
    x = torch.tensor([-1e9, -100.0, -1e-3, 0.0, 1e-3, 100.0, 1e9])
    y = tanh_clip(x, 30.0)
    assert (y.abs() <= 30.0).all()
    assert y[3] == 0 and torch.allclose(y[2:5], x[2:5], rtol=1e-6)
    assert torch.equal(torch.sign(y), torch.sign(x))


def test_amdim_nce_hand_computed_and_penalty():
    # Two images, D = 2, one location: raw scores are I / sqrt(2).
    src = torch.eye(2)
    trg = torch.eye(2)[:, :, None]
    loss, penalty = amdim_nce(src, trg, tclip=30.0, penalty_weight=0.05)
    s = 30.0 * math.tanh(1 / math.sqrt(2) / 30.0)  # clipped positive; negatives are 0
    assert loss.item() == pytest.approx(math.log(math.exp(s) + 1) - s, rel=1e-6)
    assert penalty.item() == pytest.approx(0.05 * 0.25, rel=1e-6)  # mean of (1/2, 0, 0, 1/2)


def test_amdim_nce_clipped_loss_is_bounded_for_huge_scores():
    g = torch.Generator().manual_seed(0)
    n, d, locs, c = 4, 8, 5, 30.0
    src = 1e4 * torch.randn(n, d, generator=g)
    trg = 1e4 * torch.randn(n, d, locs, generator=g)
    loss, penalty = amdim_nce(src, trg, tclip=c)
    # Every clipped score lies in [-c, c], so each term is at most 2c + log(1 + (N - 1) L).
    assert torch.isfinite(loss) and 0 <= loss.item() <= 2 * c + math.log(1 + (n - 1) * locs)
    assert penalty.item() > 1e3  # the penalty sees the unclipped scores


def test_amdim_nce_rewards_matching_images():
    g = torch.Generator().manual_seed(2)
    src = torch.randn(3, 16, generator=g)
    matched = src[:, :, None].repeat(1, 1, 4) * 4
    shuffled = matched[[1, 2, 0]]
    assert amdim_nce(src, matched)[0] < amdim_nce(src, shuffled)[0]


# ------------------------------------------------------------------------------------------------ KL

def test_gaussian_kl_known_values():
    zero = torch.zeros(2, 3)
    assert torch.equal(gaussian_kl(zero, zero), torch.zeros(2))
    assert gaussian_kl(torch.ones(1, 3), torch.zeros(1, 3)).item() == pytest.approx(1.5)
    # mu = 0, sigma^2 = 2: 0.5 * (2 - ln 2 - 1) per dimension.
    logvar = torch.full((1, 4), math.log(2.0))
    assert gaussian_kl(torch.zeros(1, 4), logvar).item() == pytest.approx(4 * 0.5 * (1 - math.log(2)))


def _amdim_nce_plain(source, target, tclip, penalty_weight):
    """The plain-op definition of amdim_nce (einsum, mask, log-sum-exp), autograd throughout."""
    n, d = source.shape
    raw = torch.einsum("id,jdl->ijl", source, target) / math.sqrt(d)
    scores = tanh_clip(raw, tclip)
    eye = torch.eye(n, dtype=torch.bool)
    pos = scores[eye]
    neg = scores.masked_fill(eye[:, :, None], float("-inf")).flatten(1)
    denom = torch.logaddexp(pos, torch.logsumexp(neg, dim=1, keepdim=True))
    return (denom - pos).mean(), penalty_weight * raw.pow(2).mean()


@pytest.mark.parametrize("scale,tclip", [(1.0, 30.0), (30.0, 30.0), (3.0, 2.0), (1e3, 100.0)])
def test_amdim_nce_matches_plain_definition_values_and_gradients(scale, tclip):
    # The fused forward/backward against autograd through the plain ops, float64, including scores far
    # past the clip and a tclip large enough that exp(-2 tclip) underflows.
    g = torch.Generator().manual_seed(3)
    src = (scale * torch.randn(5, 8, generator=g, dtype=torch.float64)).requires_grad_()
    trg = (scale * torch.randn(5, 8, 6, generator=g, dtype=torch.float64)).requires_grad_()
    w_loss, w_pen = torch.rand(2, generator=g, dtype=torch.float64)

    def run(fn):
        loss, pen = fn(src, trg, tclip, 0.05)
        gs, gt = torch.autograd.grad(w_loss * loss + w_pen * pen, (src, trg))
        return loss.detach(), pen.detach(), gs, gt

    def fused_fn(s, t, c, w):
        # amdim_nce casts to float32; run the fused function on float64 scores directly.
        z = (s @ t.transpose(0, 1).flatten(1) / (math.sqrt(8) * c)).view(1, 5, 5, 6)
        loss, mean_sq = amdim_nce_scaled(z, c)
        return loss[0], w * mean_sq[0]

    fused = run(fused_fn)
    plain = run(_amdim_nce_plain)
    for a, b in zip(fused, plain):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12 * max(1.0, b.abs().max().item()))
    loss32, pen32 = amdim_nce(src.detach().float(), trg.detach().float(), tclip, 0.05)
    assert loss32.item() == pytest.approx(plain[0].item(), rel=1e-4, abs=1e-5)
    assert pen32.item() == pytest.approx(plain[1].item(), rel=1e-4)


def test_amdim_nce_scaled_batches_independent_problems():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 4, 4, 5, generator=g)
    loss, mean_sq = amdim_nce_scaled(z, 2.0)
    for b in range(3):
        one = amdim_nce_scaled(z[b:b + 1], 2.0)
        assert torch.allclose(loss[b], one[0][0]) and torch.allclose(mean_sq[b], one[1][0])
    assert torch.allclose(mean_sq, (2.0 * z).pow(2).mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError):
        amdim_nce_scaled(torch.zeros(1, 3, 4, 5), 2.0)
