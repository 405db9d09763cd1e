"""The registry, configs (defaults, overrides, conversion, validation) and the transfer state."""

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.methods import METHODS, Method, build_encoder, build_method, method_config
from selfstudy.methods.rotation import Rotation
from selfstudy.models import build_backbone

from method_testing import make_batch, structured_images


def test_registry_names_match_classes():
    assert list(METHODS) == ["rotation", "vae", "cmc", "amdim", "simclr", "moco", "byol", "barlow", "vicreg"]
    for name, cls in METHODS.items():
        assert issubclass(cls, Method) and cls.name == name
        assert cls.Config.method == name
        cls.Config().validate()  # the defaults are valid


def test_unknown_method_lists_the_allowed_ones():
    with pytest.raises(UserError, match="unknown method 'dino'.*rotation, vae, cmc, amdim, simclr, moco, byol"):
        build_method("dino", "resnet9-tiny")


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(UserError, match="unknown backbone"):
        build_method("rotation", "resnet7")


def test_overrides_convert_strings():
    cfg = method_config("rotation", "resnet9-tiny", {"lr": "1e-3", "batch_size": "64", "epochs": 2.0,
                                                     "betas": "0.9,0.99", "cutout": "false"})
    assert cfg.lr == 1e-3 and cfg.batch_size == 64 and cfg.epochs == 2
    assert cfg.betas == (0.9, 0.99) and cfg.cutout is False
    assert cfg.to_dict()["betas"] == [0.9, 0.99]


def test_unknown_override_lists_allowed_keys():
    with pytest.raises(UserError, match="rotation: unknown option.*temperature.*allowed: lr, final_lr"):
        method_config("rotation", "resnet9-tiny", {"temperature": 0.1})


@pytest.mark.parametrize("overrides", [{"batch_size": "abc"}, {"batch_size": 2.5}, {"lr": True},
                                       {"betas": "0.9"}, {"cutout": "maybe"}])
def test_unconvertible_values_raise(overrides):
    with pytest.raises(UserError, match="rotation: .* must be"):
        method_config("rotation", "resnet9-tiny", overrides)


@pytest.mark.parametrize("overrides", [{"lr": 0}, {"final_lr": -1}, {"weight_decay": -1e-5},
                                       {"epochs": 0}, {"warmup_epochs": -1}, {"betas": (1.0, 0.9)},
                                       {"batch_size": 3}])
def test_out_of_range_values_raise(overrides):
    with pytest.raises(UserError, match="rotation: .* must be"):
        method_config("rotation", "resnet9-tiny", overrides)


def test_backbone_specific_paper_defaults_and_precedence():
    r9 = method_config("cmc", "resnet9")
    r50 = method_config("cmc", "resnet50")
    assert (r9.momentum, r9.nce_k, r9.lr, r9.batch_size) == (0.2, 8192, 1e-3, 256)
    assert (r50.momentum, r50.nce_k, r50.lr, r50.batch_size) == (0.4, 4096, 5e-3, 384)
    assert method_config("cmc", "resnet50", {"momentum": 0.5}).momentum == 0.5  # user wins
    assert method_config("rotation", "resnet9").batch_size == 512
    assert method_config("amdim", "resnet50").batch_size == 192


def test_res_sets_vae_decode_res_unless_overridden():
    assert method_config("vae", "resnet9-tiny", res=32).decode_res == 32
    assert method_config("vae", "resnet9-tiny", {"decode_res": 16}, res=32).decode_res == 16
    assert method_config("vae", "resnet9-tiny", res=48).decode_res == 64  # next power of two
    assert method_config("rotation", "resnet9-tiny", res=32).batch_size == 512  # ignored elsewhere


def test_in_channels_and_num_train_checked():
    with pytest.raises(UserError, match="in_channels must be 3"):
        build_method("rotation", "resnet9-tiny", in_channels=1)
    with pytest.raises(UserError, match="num_train"):
        build_method("rotation", "resnet9-tiny", num_train=-1)


def test_input_state_is_used_and_transferred():
    state = {"space": "rgb", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    m = build_method("rotation", "resnet9-tiny", input_state=state)
    assert m.input.space == "rgb"
    assert m.transfer_state()["input"] == state
    assert build_method("rotation", "resnet9-tiny").input.space == "lab"  # the paper's default


def test_forward_is_loss():
    m = build_method("rotation", "resnet9-tiny")
    x = structured_images(8, 16)
    assert torch.equal(m(make_batch(x))["loss"], m.loss(make_batch(x))["loss"])


def test_transfer_state_round_trip_and_errors():
    m = build_method("rotation", "resnet9-tiny")
    ts = m.transfer_state()
    assert set(ts) == {"method", "backbone", "state_dict", "input", "out_dim"}
    assert (ts["method"], ts["backbone"], ts["out_dim"]) == ("rotation", "resnet9-tiny", 64)
    build_backbone("resnet9-tiny").load_state_dict(ts["state_dict"], strict=True)
    with pytest.raises(UserError, match="key 'input' is missing"):
        build_encoder({k: v for k, v in ts.items() if k != "input"})
    with pytest.raises(UserError, match="do not fit backbone resnet9"):
        build_encoder({**ts, "backbone": "resnet9"})


def test_config_type_is_checked():
    with pytest.raises(TypeError):
        Rotation("resnet9-tiny", METHODS["vae"].Config())


@pytest.mark.parametrize("name", list(METHODS))
def test_losses_are_float32_under_bf16_autocast(name):
    m = build_method(name, "resnet9-tiny", {"decoder_width": 32} if name == "vae" else None,
                     num_train=16, res=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(make_batch(structured_images(8, 16)))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    assert out["features"].dtype == torch.float32 and not out["features"].requires_grad
    out["loss"].backward()


def test_encode_views_per_view_and_joint():
    from selfstudy.methods.base import encode_views

    torch.manual_seed(0)
    enc = build_backbone("resnet9-tiny").train()
    v1, v2 = structured_images(6, 32), structured_images(6, 32).flip(-1)
    per_view = encode_views(enc, [v1, v2], joint=False, maps=("layer2",))
    joint = encode_views(enc, [v1, v2], joint=True, maps=("layer2",))
    # Per view: exactly two separate passes, rows stacked view after view; only the asked-for maps.
    a, b = enc(v1), enc(v2)
    assert torch.equal(per_view.pooled, torch.cat([a.pooled, b.pooled]))
    assert torch.equal(per_view.maps["layer2"], torch.cat([a.maps["layer2"], b.maps["layer2"]]))
    assert set(per_view.maps) == set(joint.maps) == {"layer2"}
    # Joint: one pass of the concatenation, where BatchNorm's batch statistics span both views.
    both = enc(torch.cat([v1, v2]))
    assert torch.equal(joint.pooled, both.pooled)
    assert not torch.allclose(joint.pooled, per_view.pooled, atol=1e-4)
    # In eval mode BatchNorm uses running statistics: the two ways agree.
    enc.eval()
    e1 = encode_views(enc, [v1, v2], joint=False).pooled
    e2 = encode_views(enc, [v1, v2], joint=True).pooled
    assert torch.allclose(e1, e2, atol=1e-5)


@pytest.mark.parametrize("name", ["simclr", "amdim", "moco", "byol", "barlow", "vicreg"])
def test_joint_bn_option_changes_only_the_batch_statistics(name):
    # Same seeds, same weights: joint_bn=true and false give different losses in train mode (other
    # BN statistics) and the same in eval mode.
    x = structured_images(8, 32)
    losses = {}
    for joint in (False, True):
        torch.manual_seed(0)
        m = build_method(name, "resnet9-tiny", {"joint_bn": joint}).eval()
        losses[joint, "eval"] = m(make_batch(x, seed=3))["loss"].item()
        m.train()  # (after eval: a train-mode pass moves the running statistics)
        losses[joint, "train"] = m(make_batch(x, seed=3))["loss"].item()
    assert losses[False, "train"] != pytest.approx(losses[True, "train"], rel=1e-5)
    assert losses[False, "eval"] == pytest.approx(losses[True, "eval"], rel=1e-4)
