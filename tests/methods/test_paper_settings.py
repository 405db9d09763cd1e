"""The four paper methods' defaults are the original configuration files' settings
(princeton-vl/selfstudy ``config/{syn,dense}/{r9,r50}/*.gin``; docs/PAPER.md §4 and §10.2), with the
original's rounds of samples translated into passes over its ~400k (single-object) or ~250k (dense)
training images."""

import pytest

from selfstudy.methods import METHODS

# (method, backbone): what the original configuration says, as selfstudy fields.
PAPER = {
    ("rotation", "resnet9"): dict(lr=5e-4, final_lr=1e-5, weight_decay=1e-4, batch_size=512, epochs=50),
    ("rotation", "resnet50"): dict(lr=5e-4, final_lr=1e-5, weight_decay=1e-4, batch_size=384, epochs=50),
    ("rotation", "resnet50-dilated"): dict(lr=5e-4, final_lr=1e-5, weight_decay=1e-4, batch_size=64,
                                           epochs=36),
    ("vae", "resnet9"): dict(lr=1e-3, final_lr=1e-5, weight_decay=1e-5, batch_size=512, epochs=100,
                             kl_weight=5.12e-3),
    ("vae", "resnet50"): dict(lr=1e-3, final_lr=1e-5, weight_decay=1e-5, batch_size=384, epochs=100,
                              kl_weight=3.84e-3),
    ("vae", "resnet50-dilated"): dict(lr=1e-3, final_lr=1e-5, weight_decay=1e-5, batch_size=96, epochs=48,
                                      kl_weight=9.6e-4),
    ("cmc", "resnet9"): dict(lr=1e-3, final_lr=1e-6, weight_decay=1e-5, batch_size=256, epochs=100,
                             nce_k=8192, temperature=0.1, momentum=0.2, embed_dim=128),
    ("cmc", "resnet50"): dict(lr=5e-3, final_lr=1e-6, weight_decay=1e-5, batch_size=384, epochs=200,
                              nce_k=4096, temperature=0.1, momentum=0.4),
    ("cmc", "resnet50-dilated"): dict(lr=1e-3, final_lr=1e-6, weight_decay=1e-5, batch_size=64, epochs=64,
                                      nce_k=16384, temperature=0.1, momentum=0.4),
    ("amdim", "resnet9"): dict(lr=1e-3, final_lr=1e-6, weight_decay=1e-5, batch_size=384, epochs=50,
                               tclip=30.0, penalty=0.05, embed_dim=256),
    ("amdim", "resnet50"): dict(lr=1e-3, final_lr=1e-6, weight_decay=1e-5, batch_size=192, epochs=100,
                                tclip=30.0, penalty=0.05, embed_dim=256),
    ("amdim", "resnet50-dilated"): dict(lr=5e-4, final_lr=1e-6, weight_decay=1e-5, batch_size=32,
                                        epochs=32, tclip=30.0, penalty=0.05, embed_dim=512),
}


@pytest.mark.parametrize("method, backbone", sorted(PAPER))
def test_defaults_are_the_original_settings(method, backbone):
    cfg = METHODS[method].Config.from_overrides(backbone=backbone)
    got = {k: getattr(cfg, k) for k in PAPER[method, backbone]}
    assert got == pytest.approx(PAPER[method, backbone], rel=1e-12)
    assert tuple(cfg.betas) == (0.8, 0.999)  # Adam's betas in every original configuration


@pytest.mark.parametrize("backbone, batch", [("resnet9", 512), ("resnet50", 384), ("resnet50-dilated", 96)])
def test_vae_kl_weight_is_the_originals_times_its_batch(backbone, batch):
    # docs/PAPER.md §10.1: the original's 1e-5 on a KL summed over its batch.
    cfg = METHODS["vae"].Config.from_overrides(backbone=backbone)
    assert cfg.batch_size == batch and cfg.kl_weight == pytest.approx(1e-5 * batch, rel=1e-12)
