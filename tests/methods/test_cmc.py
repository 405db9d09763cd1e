"""CMC: stream choice, memory bank (init, exact update, eval mode), K clamp, training, the encoder."""

import pytest
import torch
import torch.nn.functional as F

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method
from selfstudy.methods.cmc import CMCEncoder, cmc_stream_backbone
from selfstudy.methods.losses import momentum_rows

from method_testing import make_batch, structured_images, train_steps


def cmc(num_train=32, **overrides):
    return build_method("cmc", "resnet9-tiny", {"nce_k": 16, **overrides}, num_train=num_train)


def test_stream_backbone_rule():
    assert cmc_stream_backbone("resnet9") == "resnet9-half"
    assert cmc_stream_backbone("resnet50") == "resnet50-half"
    assert cmc_stream_backbone("resnet9-half") == "resnet9-half"
    assert cmc_stream_backbone("resnet9-tiny") == "resnet9-tiny"  # no -half variant: itself
    with pytest.raises(UserError, match="unknown backbone"):
        cmc_stream_backbone("vgg")


def test_streams_take_one_and_two_channels():
    m = cmc()
    assert m.streams.l.in_channels == 1 and m.streams.ab.in_channels == 2


def test_bank_is_seeded_unit_rows():
    a, b = cmc(), cmc()
    assert a.bank_l.shape == (32, 128)
    assert torch.allclose(a.bank_l.norm(dim=1), torch.ones(32))
    assert torch.equal(a.bank_l, b.bank_l) and not torch.equal(a.bank_l, a.bank_ab)
    assert not torch.equal(a.bank_l, cmc(bank_seed=1).bank_l)


def test_bank_momentum_update_is_exact():
    m = cmc(momentum=0.3)
    captured = {}
    m.head_l.register_forward_hook(lambda mod, args, out: captured.__setitem__("l", out.detach()))
    m.head_ab.register_forward_hook(lambda mod, args, out: captured.__setitem__("ab", out.detach()))
    old_l, old_ab = m.bank_l.clone(), m.bank_ab.clone()
    index = torch.tensor([3, 7, 0, 12, 30, 5, 9, 21])
    m({**make_batch(structured_images(8, 16)), "index": index})
    expect_l = momentum_rows(old_l[index], F.normalize(captured["l"], dim=1), 0.3)
    expect_ab = momentum_rows(old_ab[index], F.normalize(captured["ab"], dim=1), 0.3)
    assert torch.allclose(m.bank_l[index], expect_l, atol=1e-6)
    assert torch.allclose(m.bank_ab[index], expect_ab, atol=1e-6)
    others = torch.ones(32, dtype=torch.bool)
    others[index] = False
    assert torch.equal(m.bank_l[others], old_l[others])


def test_bank_untouched_in_eval_mode():
    m = cmc().eval()
    before = m.bank_l.clone()
    m(make_batch(structured_images(8, 16)))
    assert torch.equal(m.bank_l, before)


def test_k_clamped_to_other_images():
    assert build_method("cmc", "resnet9-tiny", num_train=10).nce_k == 9
    assert cmc(num_train=100).nce_k == 16


def test_needs_num_train_and_valid_indices():
    with pytest.raises(UserError, match="num_train >= 2"):
        build_method("cmc", "resnet9-tiny")
    m = cmc(num_train=8)
    with pytest.raises(UserError, match=r"index in \[0, 8\)"):
        m({**make_batch(structured_images(4, 16)), "index": torch.tensor([0, 1, 2, 8])})


@pytest.mark.parametrize("overrides", [{"temperature": 0}, {"nce_k": 0}, {"momentum": 1.0},
                                       {"embed_dim": 0}])
def test_bad_config(overrides):
    with pytest.raises(UserError, match="cmc: .* must be"):
        cmc(**overrides)


def test_loss_decreases():
    m = cmc()
    losses = train_steps(m, structured_images(8, 16), steps=15)
    assert losses[-1] < 0.7 * losses[0]


def test_deterministic_given_seeds_and_uses_the_generator():
    x = structured_images(8, 16)
    losses = []
    for seed in (5, 5, 6):
        torch.manual_seed(3)
        losses.append(cmc()(make_batch(x, seed=seed))["loss"])
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


@pytest.mark.parametrize("space", ["lab", "rgb"])
def test_encoder_concatenates_streams_and_transfers(space):
    state = {"space": space, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    m = build_method("cmc", "resnet9-tiny", {"nce_k": 4}, num_train=16, input_state=state).eval()
    enc = m.encoder()
    assert isinstance(enc, CMCEncoder) and enc.out_dim == 2 * m.streams.l.out_dim == 128
    x = m.input(structured_images(4, 16))
    out = enc(x)
    assert out.pooled.shape == (4, 128)
    for name, c in enc.map_channels.items():
        assert out.maps[name].shape[1] == c == 2 * m.streams.l.map_channels[name]
    assert m(make_batch(structured_images(4, 16)))["features"].shape == (4, 128)
    ts = m.transfer_state()
    assert ts["out_dim"] == 128 and ts["stream_backbone"] == "resnet9-tiny"
    assert ts["input"]["space"] == space
    fresh = build_encoder(ts).eval()
    assert fresh.space == space
    assert torch.allclose(fresh(x).pooled, out.pooled)
