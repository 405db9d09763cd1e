"""VICReg: each term by hand, the weighted sum, the method's wiring, training."""

import math

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method, method_config
from selfstudy.methods.losses import vicreg_loss, vicreg_terms

from method_testing import make_batch, structured_images, train_steps


def test_defaults():
    cfg = method_config("vicreg", "resnet9")
    assert (cfg.sim_weight, cfg.var_weight, cfg.cov_weight, cfg.gamma) == (25.0, 25.0, 1.0, 1.0)
    assert (cfg.hidden_dim, cfg.proj_dim) == (1024, 1024)


def test_terms_by_hand():
    # Columns with unbiased std 2 and no correlation: no variance penalty, no covariance.
    z = torch.tensor([[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]]) * math.sqrt(3 / 4)
    t = vicreg_terms(z, z)
    assert t["invariance"].item() == 0.0
    assert t["variance"].item() == pytest.approx(0.0, abs=1e-6)
    assert t["covariance"].item() == pytest.approx(0.0, abs=1e-6)
    # Shifted view: invariance is the mean squared difference, 0.5^2.
    assert vicreg_terms(z, z + 0.5)["invariance"].item() == pytest.approx(0.25)
    # A collapsed view (every row the same): its std is sqrt(eps), hinge 1 - 0.01 per dimension.
    c = vicreg_terms(z, torch.ones(4, 2))
    assert c["variance"].item() == pytest.approx(1 - math.sqrt(1e-4), abs=1e-6)
    # Two identical columns of variance 1: Cov = [[1, 1], [1, 1]], off-diagonal sum 2, / D = 1, per view.
    col = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]]) * math.sqrt(3 / 4)
    dup = torch.cat([col, col], dim=1)
    assert vicreg_terms(dup, dup)["covariance"].item() == pytest.approx(2 * 1.0, rel=1e-5)


def test_weighted_sum():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    t = vicreg_terms(z1, z2)
    want = 25 * t["invariance"] + 25 * t["variance"] + 1 * t["covariance"]
    assert vicreg_loss(z1, z2).item() == pytest.approx(want.item(), rel=1e-6)
    assert vicreg_loss(z1, z2, 1.0, 0.0, 0.0).item() == pytest.approx(t["invariance"].item(), rel=1e-6)


@pytest.mark.parametrize("overrides", [{"sim_weight": -1}, {"gamma": 0}, {"proj_dim": 0}, {"batch_size": 1}])
def test_bad_config(overrides):
    with pytest.raises(UserError, match="vicreg: .* must be"):
        build_method("vicreg", "resnet9-tiny", overrides)


def test_wiring_and_features():
    m = build_method("vicreg", "resnet9-tiny", {"hidden_dim": 32, "proj_dim": 16})
    captured = {}
    m.projector.register_forward_hook(lambda mod, a, out: captured.__setitem__("z", out.detach()))
    out = m(make_batch(structured_images(8, 16), seed=1))
    z = captured["z"]
    assert torch.allclose(out["loss"], vicreg_loss(z[:8], z[8:]), rtol=1e-4)
    t = vicreg_terms(z[:8], z[8:])
    for k in ("invariance", "variance", "covariance"):
        assert out[k].item() == pytest.approx(t[k].item(), rel=1e-4, abs=1e-6)
    assert out["features"].shape == (8, 64)


def test_loss_decreases():
    m = build_method("vicreg", "resnet9-tiny", {"hidden_dim": 64, "proj_dim": 32})
    losses = train_steps(m, structured_images(16, 16), steps=15)
    assert losses[-1] < 0.7 * losses[0]


def test_encoder_and_transfer_state():
    m = build_method("vicreg", "resnet9-tiny").eval()
    x = m.input(structured_images(4, 16))
    ts = m.transfer_state()
    assert ts["method"] == "vicreg" and not any(k.startswith("projector") for k in ts["state_dict"])
    assert torch.allclose(build_encoder(ts).eval()(x).pooled, m.encoder()(x).pooled)
