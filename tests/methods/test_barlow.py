"""Barlow Twins: the cross-correlation loss by hand, its invariances, the method's wiring, training."""

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method, method_config
from selfstudy.methods.losses import barlow_twins_loss, cross_correlation

from method_testing import make_batch, structured_images, train_steps


def test_defaults():
    cfg = method_config("barlow", "resnet9")
    assert (cfg.lambd, cfg.hidden_dim, cfg.proj_dim, cfg.lr, cfg.weight_decay) == (0.0051, 1024, 1024, 1e-3, 1e-6)


def test_loss_by_hand():
    # Two dimensions over four samples: standardised columns (mean 0, biased std 1).
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    # Identical views, uncorrelated dimensions: C = I, loss 0.
    assert torch.allclose(cross_correlation(z, z), torch.eye(2), atol=1e-5)
    assert barlow_twins_loss(z, z, 0.5).item() == pytest.approx(0.0, abs=1e-5)
    # Second view negated: C = -I, each diagonal term (1 - (-1))^2 = 4.
    assert barlow_twins_loss(z, -z, 0.5).item() == pytest.approx(8.0, abs=1e-4)
    # Second view with its columns swapped: C = [[0, 1], [1, 0]]: diagonal 1 + 1, off-diagonal 2 * lambd.
    assert barlow_twins_loss(z, z.flip(1), 0.5).item() == pytest.approx(2.0 + 0.5 * 2.0, abs=1e-4)


def test_loss_is_invariant_to_per_dimension_affine_changes():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
    scale, shift = torch.rand(6, generator=g) * 3 + 0.5, torch.randn(6, generator=g)
    base = barlow_twins_loss(z1, z2, 0.01)
    assert barlow_twins_loss(z1 * scale + shift, z2, 0.01).item() == pytest.approx(base.item(), rel=1e-4)
    assert barlow_twins_loss(z1, z2, 0.01).item() == pytest.approx(barlow_twins_loss(z2, z1, 0.01).item(), rel=1e-5)


def test_loss_rejects_mismatched_views():
    with pytest.raises(ValueError, match="two \\(N, D\\) tensors of one shape"):
        barlow_twins_loss(torch.randn(4, 3), torch.randn(4, 2), 0.1)


@pytest.mark.parametrize("overrides", [{"lambd": -1}, {"proj_dim": 0}, {"hidden_dim": 0}, {"batch_size": 1}])
def test_bad_config(overrides):
    with pytest.raises(UserError, match="barlow: .* must be"):
        build_method("barlow", "resnet9-tiny", overrides)


def test_wiring_and_features():
    m = build_method("barlow", "resnet9-tiny", {"hidden_dim": 32, "proj_dim": 16})
    captured = {}
    m.projector.register_forward_hook(lambda mod, a, out: captured.__setitem__("z", out.detach()))
    out = m(make_batch(structured_images(8, 16), seed=1))
    z = captured["z"]
    assert z.shape == (16, 16)  # both views, one projector call
    assert torch.allclose(out["loss"], barlow_twins_loss(z[:8], z[8:], m.cfg.lambd), atol=1e-4)
    assert out["on_diagonal"].item() == pytest.approx(torch.diagonal(cross_correlation(z[:8], z[8:])).mean().item(),
                                                      abs=1e-5)
    assert out["features"].shape == (8, 64)


def test_loss_decreases():
    m = build_method("barlow", "resnet9-tiny", {"hidden_dim": 64, "proj_dim": 32})
    losses = train_steps(m, structured_images(16, 16), steps=15)
    assert losses[-1] < 0.7 * losses[0]


def test_encoder_and_transfer_state():
    m = build_method("barlow", "resnet9-tiny").eval()
    x = m.input(structured_images(4, 16))
    ts = m.transfer_state()
    assert ts["method"] == "barlow" and not any(k.startswith("projector") for k in ts["state_dict"])
    assert torch.allclose(build_encoder(ts).eval()(x).pooled, m.encoder()(x).pooled)
