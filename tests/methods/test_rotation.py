"""Rotation: balanced labels, the right image rotated by the right amount, training, state."""

import pytest
import torch
from torch import nn

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method
from selfstudy.methods.rotation import rotation_chunks

from method_testing import make_batch, structured_images, train_steps


@pytest.mark.parametrize("n", [4, 8, 10, 13, 512])
def test_labels_exactly_balanced(n):
    labels = rotation_chunks(n)
    assert len(labels) == 4 * (n // 4)
    assert torch.equal(torch.bincount(labels, minlength=4), torch.full((4,), n // 4))


def test_chunks_are_rotated_by_their_label():
    m = build_method("rotation", "resnet9-tiny")
    m.augment = lambda x, g: x  # isolate the rotation
    m.input = nn.Identity()
    seen = []
    m.backbone.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    x = structured_images(10, 16)
    out = m(make_batch(x))
    fed = seen[0]
    assert fed.shape == x.shape
    for i, k in enumerate(rotation_chunks(10).tolist()):
        assert torch.equal(fed[i], torch.rot90(x[i], k, dims=(1, 2)))
    assert torch.equal(fed[8:], x[8:])  # leftovers upright, outside the loss
    assert out["features"].shape == (4, 64)  # chunk 0 (2 images) and the 2 leftovers, all upright


def test_too_small_batch_and_bad_config():
    m = build_method("rotation", "resnet9-tiny")
    with pytest.raises(ValueError, match="at least 4"):
        m(make_batch(structured_images(3, 16)))
    with pytest.raises(UserError, match="batch_size must be an integer >= 4"):
        build_method("rotation", "resnet9-tiny", {"batch_size": 2})


def test_loss_decreases():
    m = build_method("rotation", "resnet9-tiny")
    losses = train_steps(m, structured_images(16, 16), steps=15)
    assert losses[-1] < 0.7 * losses[0]


def test_deterministic_given_seeds():
    x = structured_images(8, 16)
    torch.manual_seed(3)
    a = build_method("rotation", "resnet9-tiny")(make_batch(x, seed=5))["loss"]
    torch.manual_seed(3)
    b = build_method("rotation", "resnet9-tiny")(make_batch(x, seed=5))["loss"]
    assert torch.equal(a, b)


def test_encoder_and_transfer_state():
    m = build_method("rotation", "resnet9-tiny").eval()
    x = m.input(structured_images(4, 16))
    out = m.encoder()(x)
    assert out.pooled.shape == (4, m.encoder().out_dim)
    ts = m.transfer_state()
    fresh = build_encoder(ts).eval()
    assert torch.allclose(fresh(x).pooled, out.pooled)


@pytest.mark.parametrize("n", [8, 10, 13])
def test_features_are_the_upright_rows_and_say_which(n):
    # In eval mode each image's feature is independent of the rest of the batch, so the rows the method
    # returns must be exactly the encoder's output on those (un-rotated) images: chunk 0 and the n % 4
    # leftovers, named by feature_rows so the online probe takes the matching labels.
    torch.manual_seed(0)
    m = build_method("rotation", "resnet9-tiny").eval()
    m.augment = lambda x, g: x
    x = structured_images(n, 16)
    out = m(make_batch(x))
    q = n // 4
    rows = torch.cat([torch.arange(q), torch.arange(4 * q, n)])
    assert torch.equal(out["feature_rows"], rows)
    expected = m.encoder()(m.input(x)).pooled[rows]
    assert out["features"].shape == (len(rows), m.encoder().out_dim)
    assert torch.allclose(out["features"], expected, atol=1e-5)
    rotated = m.encoder()(m.input(torch.rot90(x[rows], 1, dims=(2, 3)))).pooled
    assert not torch.allclose(out["features"], rotated, atol=1e-3)
