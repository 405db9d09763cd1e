"""Weights files a user holds: torchvision-named state dicts, loaded strictly or refused in one line."""

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.models import build_backbone
from selfstudy.models.weights import build_encoder, is_pretraining_checkpoint, load_weights, read_state_dict


class Pickled:
    """An arbitrary object: a file holding one needs a full unpickle, which weights_only refuses."""


def torchvision_style(backbone="resnet18-tiny", seed=0):
    """A state dict as torchvision saves a ResNet: our trunk's names and shapes, no ``prepool``, plus
    the ``fc`` classifier (1000 ImageNet classes)."""
    torch.manual_seed(seed)
    model = build_backbone(backbone)
    sd = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("prepool.")}
    width = model.map_channels["layer4"]
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, width), torch.randn(1000)
    return sd


def test_the_backbones_follow_torchvision_names():
    sd = build_backbone("resnet18").state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer4.1.bn2.running_var"].shape == (512,)
    sd = build_backbone("resnet50").state_dict()
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module."])
def test_a_torchvision_file_loads_every_trunk_weight(tmp_path, wrap):
    sd = torchvision_style()
    stored = {"bare": sd, "state_dict": {"state_dict": sd, "epoch": 90}, "model": {"model": sd},
              "module.": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    torch.save(stored, tmp_path / "w.pth")
    init = load_weights(tmp_path / "w.pth", "resnet18-tiny")
    assert init["backbone"] == "resnet18-tiny" and init["input"] is None and init["method"] == "weights:w"
    assert not is_pretraining_checkpoint(tmp_path / "w.pth")
    torch.manual_seed(123)
    enc = build_encoder(init)
    got = enc.state_dict()
    for k, v in sd.items():
        if not k.startswith("fc."):
            assert torch.equal(got[k], v), k
    # The prepool projection is not in the file: it is freshly initialised from the global generator.
    torch.manual_seed(123)
    assert torch.equal(got["prepool.weight"], build_backbone("resnet18-tiny").state_dict()["prepool.weight"])


def test_old_files_without_batchnorm_counters_load(tmp_path):
    sd = {k: v for k, v in torchvision_style().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "old.pth")
    build_encoder(load_weights(tmp_path / "old.pth", "resnet18-tiny"))


def test_a_file_of_another_backbone_is_refused_with_counts_and_names(tmp_path):
    torch.save(torchvision_style("resnet18-tiny"), tmp_path / "r18.pth")
    with pytest.raises(UserError) as e:
        load_weights(tmp_path / "r18.pth", "resnet18")  # full width: every conv differs
    msg = str(e.value)
    assert "\n" not in msg and "does not fit backbone resnet18" in msg
    assert "of another shape: conv1.weight (16x3x7x7 in the file, 64x3x7x7 here)" in msg
    assert "and " in msg and "more" in msg and "--backbone" in msg
    with pytest.raises(UserError, match=r"12 missing: layer1.0.bn.weight.*87 unexpected: layer1.0.bn1.weight"
                                         r".*24 of another shape"):
        torch.save(torchvision_style("resnet18-tiny"), tmp_path / "r18.pth")
        load_weights(tmp_path / "r18.pth", "resnet9-tiny")


def test_extra_or_missing_keys_are_refused(tmp_path):
    sd = torchvision_style()
    sd["head.weight"] = torch.zeros(3)
    del sd["layer3.0.conv1.weight"]
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(UserError, match=r"1 missing: layer3.0.conv1.weight; 1 unexpected: head.weight"):
        load_weights(tmp_path / "w.pth", "resnet18-tiny")


def test_files_that_are_not_weights_are_refused(tmp_path):
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="not a readable weights file"):
        read_state_dict(tmp_path / "text.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(UserError, match="holds no backbone weights"):
        read_state_dict(tmp_path / "meta.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(UserError, match="holds a list, not a dict"):
        read_state_dict(tmp_path / "list.pth")

    torch.save({"conv1.weight": torch.zeros(1), "obj": Pickled()}, tmp_path / "pickle.pth")
    with pytest.raises(UserError, match="not a readable weights file"):  # weights_only refuses objects
        read_state_dict(tmp_path / "pickle.pth")
    with pytest.raises(UserError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(UserError, match="unknown backbone"):
        load_weights(tmp_path / "meta.pth", "vgg16")
