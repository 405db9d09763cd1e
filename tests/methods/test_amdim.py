"""AMDIM: shared flip between views, embedding shapes, the loss terms, training, state."""

import pytest
import torch
from torch import nn

from selfstudy.data.augment import PaperAugment
from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method

from method_testing import make_batch, structured_images, train_steps


def amdim(**overrides):
    return build_method("amdim", "resnet9-tiny", {"embed_dim": 32, **overrides})


def test_views_share_the_flip():
    m = amdim()
    # Only the flip left on: if the two views share it they are identical.
    m.augment = PaperAugment(colour_jitter=False, grayscale=False, crop=False, cutout=False)
    m.input = nn.Identity()
    seen = []
    m.backbone.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    x = structured_images(16, 16)
    m(make_batch(x))
    v1, v2 = seen[0][:16], seen[0][16:]
    assert torch.equal(v1, v2)
    flipped = [not torch.equal(v1[i], x[i]) for i in range(16)]
    assert any(flipped) and not all(flipped)
    for i in range(16):
        assert torch.equal(v1[i], x[i].flip(-1) if flipped[i] else x[i])


@pytest.mark.parametrize("res", [16, 32])
def test_embedding_shapes(res):
    m = amdim()
    r1, r5, r7, pooled = m.embed(m.input(structured_images(3, res)))
    assert r1.shape == (3, 32) and r5.shape == (3, 32, 5, 5) and r7.shape == (3, 32, 7, 7)
    assert pooled.shape == (3, 64)


def test_loss_is_the_sum_of_its_terms():
    out = amdim()(make_batch(structured_images(8, 16)))
    total = out["loss_1t5"] + out["loss_1t7"] + out["loss_5t5"] + out["penalty"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    assert out["features"].shape == (8, 64)


@pytest.mark.parametrize("overrides", [{"tclip": 0}, {"embed_dim": 0}, {"penalty": -1},
                                       {"batch_size": 1}])
def test_bad_config(overrides):
    with pytest.raises(UserError, match="amdim: .* must be"):
        amdim(**overrides)


def test_loss_decreases():
    losses = train_steps(amdim(), structured_images(8, 16), steps=15)
    assert losses[-1] < 0.8 * losses[0]


def test_deterministic_given_seeds_and_uses_the_generator():
    x = structured_images(8, 16)
    losses = []
    for seed in (5, 5, 6):
        torch.manual_seed(3)
        losses.append(amdim()(make_batch(x, seed=seed))["loss"])
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


def test_encoder_and_transfer_state():
    m = amdim().eval()
    x = m.input(structured_images(4, 16))
    assert m.encoder()(x).pooled.shape == (4, m.encoder().out_dim)
    ts = m.transfer_state()
    assert set(ts) == {"method", "backbone", "state_dict", "input", "out_dim"}
    assert not any(k.startswith("embed") for k in ts["state_dict"])  # heads stay behind
    fresh = build_encoder(ts).eval()
    assert torch.allclose(fresh(x).pooled, m.encoder()(x).pooled)
