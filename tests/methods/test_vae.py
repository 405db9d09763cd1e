"""VAE: decoder shapes per resolution, the loss formula, training, state."""

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method
from selfstudy.methods.losses import gaussian_kl, vae_loss
from selfstudy.methods.vae import PAPER_KL_WEIGHT, VAE, Decoder, decoder_widths

from method_testing import make_batch, structured_images, train_steps

SMALL = {"decoder_width": 32}


def test_paper_decoder_widths_at_64():
    assert decoder_widths(64, 256) == [256, 256, 256, 128, 64]


@pytest.mark.parametrize("res", [8, 16, 32, 64, 128])
def test_decoder_reaches_the_resolution(res):
    dec = Decoder(latent_dim=16, decode_res=res, width=16)
    assert dec(torch.randn(2, 16)).shape == (2, 3, res, res)


def test_loss_is_mse_plus_weighted_kl():
    m = build_method("vae", "resnet9-tiny", {**SMALL, "kl_weight": 0.5}, res=16)
    out = m(make_batch(structured_images(8, 16)))
    assert out["loss"].item() == pytest.approx(out["recon"].item() + 0.5 * out["kl"].item(), rel=1e-5)
    assert out["kl"].item() > 0 and out["features"].shape == (8, 64)


def test_kl_is_mean_over_batch_of_sum_over_dims():
    m = build_method("vae", "resnet9-tiny", SMALL, res=16)
    h = torch.randn(4, 64)
    mu, logvar = m.mu(h), m.logvar(h)
    expected = (0.5 * (mu ** 2 + logvar.exp() - logvar - 1)).sum() / 4
    assert gaussian_kl(mu, logvar).mean().item() == pytest.approx(expected.item(), rel=1e-5)


def _original_objective(recon, target, mu, logvar, lmd):
    """The paper's VAE objective (its tasks/vae.py), written out: per-value mean squared error plus
    ``lmd`` times the KL summed over the batch *and* the latent dimensions."""
    mse = ((target - recon) ** 2).sum() / target.numel()
    kld = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum()
    return mse + lmd * kld


@pytest.mark.parametrize("backbone, batch", [("resnet9", 512), ("resnet50", 384), ("resnet50-dilated", 96)])
def test_objective_equals_the_original_at_its_batch_size(backbone, batch):
    # docs/PAPER.md §10.1: the per-image kl_weight is the paper's 1e-5 times its batch size, so the two
    # objectives are equal (factor 1) at the paper's batch for that backbone.
    cfg = VAE.Config.from_overrides(backbone=backbone)
    assert cfg.batch_size == batch
    assert cfg.kl_weight == pytest.approx(PAPER_KL_WEIGHT * batch, rel=1e-12)
    g = torch.Generator().manual_seed(0)
    recon, target = torch.randn(batch, 3, 4, 4, generator=g), torch.randn(batch, 3, 4, 4, generator=g)
    mu, logvar = torch.randn(batch, 8, generator=g), 0.5 * torch.randn(batch, 8, generator=g)
    original = _original_objective(recon, target, mu, logvar, PAPER_KL_WEIGHT)
    ours, mse, kl = vae_loss(recon, target, mu, logvar, cfg.kl_weight)
    assert ours.item() == pytest.approx(original.item(), rel=1e-5)
    # The KL:reconstruction balance is the original's, not 1/512 of it.
    orig_kl_part = original - mse
    assert (cfg.kl_weight * kl).item() == pytest.approx(orig_kl_part.item(), rel=1e-5)
    # The old default (1e-5 on the per-image mean) was exactly `batch` times weaker.
    assert orig_kl_part.item() / (1e-5 * kl).item() == pytest.approx(batch, rel=1e-5)


def test_kl_weight_does_not_depend_on_the_batch_size():
    # Two copies of a batch: the original's KL term doubles, selfstudy's stays.
    g = torch.Generator().manual_seed(1)
    t = [torch.randn(16, 3, 4, 4, generator=g), torch.randn(16, 3, 4, 4, generator=g),
         torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)]
    single = vae_loss(*t, kl_weight=5.12e-3)[0]
    double = vae_loss(*[torch.cat([x, x]) for x in t], kl_weight=5.12e-3)[0]
    assert double.item() == pytest.approx(single.item(), rel=1e-6)


def test_method_loss_is_vae_loss_with_the_config_weight():
    m = build_method("vae", "resnet9-tiny", SMALL, res=16)
    assert m.cfg.kl_weight == 5.12e-3
    out = m(make_batch(structured_images(8, 16)))
    assert out["loss"].item() == pytest.approx(out["recon"].item() + 5.12e-3 * out["kl"].item(), rel=1e-5)


def test_decodes_at_decode_res_when_images_differ():
    m = build_method("vae", "resnet9-tiny", {**SMALL, "decode_res": 16})
    out = m(make_batch(structured_images(4, 32)))
    assert torch.isfinite(out["loss"])


def test_bad_config():
    with pytest.raises(UserError, match="decode_res must be a power of two"):
        build_method("vae", "resnet9-tiny", {"decode_res": 48})
    with pytest.raises(UserError, match="kl_weight must be"):
        build_method("vae", "resnet9-tiny", {"kl_weight": -1})


def test_loss_decreases():
    m = build_method("vae", "resnet9-tiny", SMALL, res=16)
    losses = train_steps(m, structured_images(8, 16), steps=15)
    assert losses[-1] < 0.9 * losses[0]  # reconstruction improves slowly: a loose margin


def test_deterministic_given_seeds_and_uses_the_generator():
    x = structured_images(8, 16)
    losses = []
    for seed in (5, 5, 6):
        torch.manual_seed(3)
        losses.append(build_method("vae", "resnet9-tiny", SMALL, res=16)(make_batch(x, seed=seed))["loss"])
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


def test_encoder_and_transfer_state():
    m = build_method("vae", "resnet9-tiny", SMALL, res=16).eval()
    x = m.input(structured_images(4, 16))
    assert m.encoder()(x).pooled.shape == (4, 64)
    ts = m.transfer_state()
    assert ts["method"] == "vae" and ts["out_dim"] == 64
    fresh = build_encoder(ts).eval()
    assert torch.allclose(fresh(x).pooled, m.encoder()(x).pooled)
