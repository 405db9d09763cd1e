"""SimCLR: projector shape, the loss against nt_xent, training, state."""

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method, method_config

from method_testing import make_batch, structured_images, train_steps


def test_defaults():
    cfg = method_config("simclr", "resnet9")
    assert (cfg.temperature, cfg.proj_dim, cfg.lr, cfg.weight_decay) == (0.2, 128, 1e-3, 1e-6)


def test_projector_and_features():
    m = build_method("simclr", "resnet9-tiny", {"proj_dim": 16})
    assert m.projector(torch.randn(4, 64)).shape == (4, 16)
    out = m(make_batch(structured_images(8, 16)))
    assert out["features"].shape == (8, 64) and out["loss"].dim() == 0


@pytest.mark.parametrize("overrides", [{"temperature": 0}, {"temperature": -0.5}, {"proj_dim": 0},
                                       {"batch_size": 1}])
def test_bad_config(overrides):
    with pytest.raises(UserError, match="simclr: .* must be"):
        build_method("simclr", "resnet9-tiny", overrides)


def test_loss_decreases():
    m = build_method("simclr", "resnet9-tiny")
    losses = train_steps(m, structured_images(8, 16), steps=15)
    assert losses[-1] < 0.7 * losses[0]


def test_deterministic_given_seeds_and_uses_the_generator():
    x = structured_images(8, 16)
    losses = []
    for seed in (5, 5, 6):
        torch.manual_seed(3)
        losses.append(build_method("simclr", "resnet9-tiny")(make_batch(x, seed=seed))["loss"])
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


def test_encoder_and_transfer_state():
    m = build_method("simclr", "resnet9-tiny").eval()
    x = m.input(structured_images(4, 16))
    assert m.encoder()(x).pooled.shape == (4, 64)
    ts = m.transfer_state()
    assert ts["method"] == "simclr" and ts["out_dim"] == 64
    assert not any(k.startswith("projector") for k in ts["state_dict"])
    fresh = build_encoder(ts).eval()
    assert torch.allclose(fresh(x).pooled, m.encoder()(x).pooled)
