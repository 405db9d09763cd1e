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
    v1, v2 = seen  # one backbone pass per view
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


def _plain_nce(src, trg, tclip, weight):
    # docs/PAPER.md §4.4 written out with plain ops: scores / sqrt(d), tanh clip, other images' locations as
    # negatives, penalty on the raw scores.
    n, d = src.shape
    raw = torch.einsum("id,jdl->ijl", src.double(), trg.double()) / d ** 0.5
    s = tclip * torch.tanh(raw / tclip)
    eye = torch.eye(n, dtype=torch.bool)
    pos = s[eye]
    neg = s.masked_fill(eye[:, :, None], float("-inf")).flatten(1)
    loss = (torch.logaddexp(pos, torch.logsumexp(neg, dim=1, keepdim=True)) - pos).mean()
    return loss, weight * raw.pow(2).mean()


def _plain_loss(m, batch):
    """The loss as first written: embed both views with ``m.embed``, six separate NCE terms."""
    x, gen = batch["images"], batch["generator"]
    n = len(x)
    p1 = m.augment.draw(n, tuple(x.shape[-2:]), gen, x.device)
    p2 = m.augment.draw(n, tuple(x.shape[-2:]), gen, x.device)
    p2["flip"] = p1["flip"]
    v1, v2 = m.input(m.augment.apply(x, p1)), m.input(m.augment.apply(x, p2))
    if m.cfg.joint_bn:  # one pass over both views
        r1, r5, r7, _ = m.embed(torch.cat([v1, v2]))
    else:  # one pass per view
        r1, r5, r7 = (torch.cat(pair) for pair in list(zip(m.embed(v1), m.embed(v2)))[:3])
    r5, r7 = r5.flatten(2), r7.flatten(2)
    loc = torch.randint(25, (2 * n,), generator=gen)
    r5_src = r5[torch.arange(2 * n), :, loc]
    terms, pen = [], 0
    for src, trg in ((r1, r5), (r1, r7), (r5_src, r5)):
        a = _plain_nce(src[:n], trg[n:], m.cfg.tclip, m.cfg.penalty)
        b = _plain_nce(src[n:], trg[:n], m.cfg.tclip, m.cfg.penalty)
        terms.append(0.5 * (a[0] + b[0]))
        pen = pen + a[1] + b[1]
    return terms, 0.5 * pen


@pytest.mark.parametrize("embed_dim,joint_bn", [(32, False), (256, False), (300, False), (256, True)])
def test_loss_matches_the_plain_definition(embed_dim, joint_bn):
    # embed_dim 32 materialises r5/r7 (C + 1 >= e); 256 and 300 take the factored products.
    torch.manual_seed(0)
    m = build_method("amdim", "resnet9-tiny", {"embed_dim": embed_dim, "joint_bn": joint_bn})
    x = structured_images(6, 32)
    out = m(make_batch(x, seed=7))
    (l15, l17, l55), pen = _plain_loss(m, make_batch(x, seed=7))
    for got, want in ((out["loss_1t5"], l15), (out["loss_1t7"], l17), (out["loss_5t5"], l55),
                      (out["penalty"], pen)):
        assert got.item() == pytest.approx(want.item(), rel=1e-4, abs=1e-6)


def test_gradients_match_the_plain_definition():
    torch.manual_seed(1)
    m = build_method("amdim", "resnet9-tiny", {"embed_dim": 256})
    x = structured_images(6, 32)
    params = [m.embed1.weight, m.embed5.weight, m.embed5.bias, m.embed7.weight, m.embed7.bias,
              m.backbone.prepool.weight]
    got = torch.autograd.grad(m(make_batch(x, seed=2))["loss"], params)
    terms, pen = _plain_loss(m, make_batch(x, seed=2))
    want = torch.autograd.grad(sum(terms) + pen, params)
    for g, w in zip(got, want):
        assert torch.allclose(g, w.float(), rtol=1e-3, atol=1e-5 * w.abs().max().item())


def test_score_products_follow_autocast_and_stay_close_to_fp32(monkeypatch):
    import selfstudy.methods.amdim as amdim_module

    seen = []
    real_bmm = torch.bmm
    monkeypatch.setattr(amdim_module.torch, "bmm", lambda a, b: seen.append(a.dtype) or real_bmm(a, b))
    torch.manual_seed(0)
    m = amdim(embed_dim=256).eval()  # eval: the same BatchNorm statistics in both runs
    x = structured_images(8, 32)
    full = m(make_batch(x, seed=4))
    assert seen == [torch.float32, torch.float32]
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(make_batch(x, seed=4))
    assert seen == [torch.bfloat16, torch.bfloat16]  # the two score products in the autocast dtype
    assert low["loss"].dtype == torch.float32
    # The backbone ran in bf16 too; the loss moves by well under a percent.
    assert low["loss"].item() == pytest.approx(full["loss"].item(), rel=1e-2)
