"""Loss values of the momentum methods on hand-computed cases: MoCo's InfoNCE, BYOL's 2 - 2 cos."""

import math

import pytest
import torch

from selfstudy.methods.losses import byol_loss, info_nce


# ------------------------------------------------------------------------------------------ InfoNCE

def test_info_nce_hand_built():
    # Query along e1 (scale 3), positive key along e1 (scale 2), queue e2 and -e1 at T = 0.5: after
    # normalising, logits (2, 0, -2) with the positive first.
    q, k = torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    expected = math.log(1 + math.exp(-2) + math.exp(-4))
    assert info_nce(q, k, queue, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_two_queries_average():
    # The second query, e2, has an orthogonal positive and meets the queued e2: logits (0, 2, 0).
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    first = math.log(1 + math.exp(-2) + math.exp(-4))           # logits (2, 0, -2)
    second = math.log(1 + math.exp(2) + math.exp(0))             # logits (0, 2, 0)
    assert info_nce(q, k, queue, 0.5).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_info_nce_opposite_negative_is_nearly_free():
    # Logits (10, -10) at T = 0.1: loss = log(1 + e^-20).
    q = torch.randn(1, 16, generator=torch.Generator().manual_seed(0))
    far = -torch.nn.functional.normalize(q, dim=1)
    assert info_nce(q, q, far, 0.1).item() == pytest.approx(math.log1p(math.exp(-20)), abs=1e-7)


def test_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(5, 4), 0.2)
    with pytest.raises(ValueError):
        info_nce(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(5, 3), 0.2)


# ----------------------------------------------------------------------------------------- BYOL loss

def test_byol_loss_identical_and_opposite():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(5, 8, generator=g)
    assert byol_loss(p, p.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, 2.5 * p).item() == pytest.approx(0.0, abs=1e-6)   # scale does not matter
    assert byol_loss(p, -p).item() == pytest.approx(4.0, abs=1e-6)


def test_byol_loss_hand_built():
    # Rows at 0, 90 and 60 degrees: 2 - 2 cos = 0, 2, 1; mean 1.
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[4.0, 0.0], [0.0, 0.5], [0.5, math.sqrt(3) / 2]])
    assert byol_loss(p, z).item() == pytest.approx(1.0, rel=1e-6)


def test_byol_loss_symmetric_and_in_range():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert byol_loss(a, b).item() == pytest.approx(byol_loss(b, a).item(), rel=1e-6)
    assert 0 <= byol_loss(a, b).item() <= 4


def test_byol_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        byol_loss(torch.zeros(3, 4), torch.zeros(3, 5))
