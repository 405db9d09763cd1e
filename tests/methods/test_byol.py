"""BYOL: heads, the frozen target and its momentum update, the loss's wiring, training, state."""

import math

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method, method_config
from selfstudy.methods.losses import byol_loss

from method_testing import make_batch, structured_images, train_steps


def byol(**overrides):
    return build_method("byol", "resnet9-tiny", {"hidden_dim": 32, "proj_dim": 16, **overrides})


def trainable(m):
    return [p for p in m.parameters() if p.requires_grad]


def test_defaults():
    cfg = method_config("byol", "resnet9")
    assert (cfg.momentum, cfg.hidden_dim, cfg.proj_dim) == (0.99, 256, 128)
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size) == (1e-3, 1e-6, 256)


@pytest.mark.parametrize("overrides", [{"momentum": 1.0}, {"momentum": -0.5}, {"hidden_dim": 0},
                                       {"proj_dim": 0}, {"batch_size": 1}])
def test_bad_config(overrides):
    with pytest.raises(UserError, match="byol: .* must be"):
        build_method("byol", "resnet9-tiny", overrides)


def test_heads():
    m = byol()
    assert m.projector(torch.randn(4, 64)).shape == (4, 16)
    assert m.predictor(torch.randn(4, 16)).shape == (4, 16)


def test_target_starts_equal_is_frozen_and_gets_no_grad():
    m = byol()
    target = [p for mod in (m.target_backbone, m.target_projector) for p in mod.parameters()]
    assert not any(p.requires_grad for p in target)
    online = {id(p) for mod in (m.backbone, m.projector, m.predictor) for p in mod.parameters()}
    assert {id(p) for p in trainable(m)} == online
    for a, b in zip(m.target_projector.parameters(), m.projector.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    train_steps(m, structured_images(8, 16), steps=1)
    assert all(p.grad is None for p in target)


def test_loss_wiring_and_ema_after_a_step():
    m = byol(momentum=0.5)
    x = structured_images(8, 16)
    train_steps(m, x, steps=1)
    captured = {}
    m.predictor.register_forward_hook(lambda mod, a, out: captured.__setitem__("p", out.detach()))
    m.target_projector.register_forward_hook(lambda mod, a, out: captured.__setitem__("z", out.detach()))
    target_before = [p.clone() for p in m.target_backbone.parameters()]
    online_now = [p.clone() for p in m.backbone.parameters()]
    out = m(make_batch(x, seed=2))
    assert all(torch.equal(t, t0) for t, t0 in zip(m.target_backbone.parameters(), target_before))
    m.after_step(1, 4)  # the first step of a cosine schedule: tau = the base momentum, 0.5
    for t, t0, o in zip(m.target_backbone.parameters(), target_before, online_now):
        assert torch.allclose(t, 0.5 * t0 + 0.5 * o, atol=1e-7)
    p, z = captured["p"], captured["z"]
    # The paper's sum of both orders: view-1 predictions against view-2 targets and vice versa.
    expected = byol_loss(p[:8], z[8:]) + byol_loss(p[8:], z[:8])
    assert torch.allclose(out["loss"], expected, atol=1e-6)
    assert out["cosine"].item() == pytest.approx(1 - expected.item() / 4, abs=1e-6)
    assert out["features"].shape == (8, 64)


def test_cosine_momentum_schedule():
    m = byol(momentum=0.99)
    taus = [m.target_momentum(step, 5) for step in range(1, 6)]
    # 1 - 0.01 * (cos(pi k / 5) + 1) / 2 for k = 0..4: from the base toward 1.
    want = [1 - 0.01 * (math.cos(math.pi * k / 5) + 1) / 2 for k in range(5)]
    assert taus == pytest.approx(want, abs=1e-12)
    assert taus[0] == pytest.approx(0.99) and all(a < b for a, b in zip(taus, taus[1:]))
    const = byol(momentum=0.99, momentum_schedule="constant")
    assert [const.target_momentum(s, 5) for s in range(1, 6)] == [0.99] * 5
    with pytest.raises(UserError, match="momentum_schedule must be 'cosine' or 'constant'"):
        byol(momentum_schedule="linear")


def test_eval_mode_does_not_move_the_target():
    m = byol()
    train_steps(m, structured_images(8, 16), steps=1)
    m.eval()
    before = [p.clone() for p in m.target_backbone.parameters()]
    m(make_batch(structured_images(8, 16)))
    assert all(torch.equal(a, b) for a, b in zip(m.target_backbone.parameters(), before))


def test_loss_decreases():
    m = byol()
    losses = train_steps(m, structured_images(8, 16), steps=6)
    assert losses[-1] < 0.7 * losses[0]


def test_deterministic_given_seeds_and_uses_the_generator():
    x = structured_images(8, 16)
    losses = []
    for seed in (5, 5, 6):
        torch.manual_seed(3)
        losses.append(byol()(make_batch(x, seed=seed))["loss"])
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


def test_state_dict_resumes_exactly():
    x = structured_images(8, 16)
    a = byol()
    train_steps(a, x, steps=1)
    state = a.state_dict()
    assert any(k.startswith("target_backbone.") for k in state)
    torch.manual_seed(7)
    b = byol()
    b.load_state_dict(state)
    assert torch.equal(a(make_batch(x, seed=4))["loss"], b(make_batch(x, seed=4))["loss"])
    pairs = zip(a.target_backbone.parameters(), b.target_backbone.parameters())
    assert all(torch.equal(p, q) for p, q in pairs)


def test_encoder_and_transfer_state():
    m = byol()
    train_steps(m, structured_images(8, 16), steps=1)
    m.eval()
    x = m.input(structured_images(4, 16))
    assert m.encoder() is m.backbone
    ts = m.transfer_state()
    assert ts["method"] == "byol" and ts["out_dim"] == 64
    assert not any(k.startswith(("projector", "predictor", "target_")) for k in ts["state_dict"])
    fresh = build_encoder(ts).eval()
    assert torch.allclose(fresh(x).pooled, m.encoder()(x).pooled)
