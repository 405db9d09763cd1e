import math

import pytest
import torch
from torch import nn

from selfstudy.errors import UserError
from selfstudy.models import BACKBONES, BackboneOutput, build_backbone
from selfstudy.models.resnet9 import ConvBlock


def _forward(model, res, channels=3, n=2):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(n, channels, res, res))


def test_parameter_count_is_the_papers_6_7m():
    # Counted by hand from docs/PAPER.md §3.1: convs 1,728 + 73,728 + 2x147,456 + 294,912 + 1,179,648
    # + 2x2,359,296, BN 3,968 weights and biases, prepool 512*256 + 256.
    assert build_backbone("resnet9").num_parameters() == 6_699_328


def test_tiny_and_half_parameter_counts():
    assert build_backbone("resnet9-tiny").num_parameters() == 419_920
    # 1/8 width: 8/16/32/64 channels and a 32-wide prepool; about a quarter of tiny's weights
    nano = build_backbone("resnet9-nano")
    assert nano.num_parameters() == 105_384 and nano.out_dim == 32
    assert [nano.map_channels[k] for k in ("layer1", "layer2", "layer3")] == [16, 32, 64]
    assert build_backbone("resnet9-nano").state_dict().keys() == build_backbone("resnet9-tiny").state_dict().keys()
    # 1/16 width: 4/8/16/32 channels and a 16-wide prepool
    pico = build_backbone("resnet9-pico")
    assert pico.out_dim == 16 and [pico.map_channels[k] for k in ("layer1", "layer2", "layer3")] == [8, 16, 32]
    assert pico.num_parameters() < nano.num_parameters() / 3
    assert build_backbone("resnet9-half", in_channels=1).num_parameters() == 3_322_176


@pytest.mark.parametrize("res, side", [(32, 4), (64, 8)])
def test_output_shapes(res, side):
    out = _forward(build_backbone("resnet9"), res)
    assert isinstance(out, BackboneOutput)
    assert out.pooled.shape == (2, 256)
    assert out.maps["prepool"].shape == (2, 256, side, side)
    assert out.maps["layer2"].shape == (2, 256, 2 * side, 2 * side)


def test_maps_match_the_declared_channels_and_strides():
    model = build_backbone("resnet9-tiny")
    out = _forward(model, 32)
    assert set(out.maps) == set(model.map_channels) == set(model.map_strides)
    for name, t in out.maps.items():
        assert t.shape[1] == model.map_channels[name], name
        assert t.shape[-1] == model.map_size(name, 32), name
    assert "prepool" in out.maps and model.dense_map in out.maps
    assert torch.allclose(out.pooled, out.maps["prepool"].mean(dim=(2, 3)))


def test_amdim_sources_are_layer2_and_the_first_conv_of_layer3():
    model = build_backbone("resnet9")
    assert model.amdim_maps == ("layer2", "layer3.0")
    out = _forward(model, 64, n=1)
    assert out.maps["layer2"].shape[1] == 256
    assert out.maps["layer3.0"].shape[1] == 512


def test_tiny_is_quarter_width_with_a_64_d_feature():
    model = build_backbone("resnet9-tiny")
    assert [model.map_channels[k] for k in ("stem", "layer1", "layer2", "layer3")] == [16, 32, 64, 128]
    assert model.out_dim == 64
    assert build_backbone("resnet9-tiny", out_dim=256).out_dim == 256
    # width multiplies the variant's own widths
    assert build_backbone("resnet9-tiny", width=2).map_channels["layer3"] == 256


@pytest.mark.parametrize("channels", [1, 2])
def test_half_width_cmc_stream(channels):
    model = build_backbone("resnet9-half", in_channels=channels)
    assert model.conv1.in_channels == channels
    assert model.out_dim == 128
    # layer1: ConvBlock 64->64 then a BasicBlock 64->128 with a projection skip and 64-wide middle
    assert model.layer1[0].conv1.out_channels == 64
    assert model.layer1[1].conv1.out_channels == 64
    assert isinstance(model.layer1[1].downsample[0], nn.Conv2d)
    assert model.layer2[0].conv1.out_channels == 128
    assert model.layer3[1].conv1.out_channels == 256 and model.layer3[1].conv2.out_channels == 512
    out = _forward(model, 32, channels)
    assert out.pooled.shape == (2, 128)


def test_conv_block_order_and_celu():
    block = build_backbone("resnet9").layer1[0]
    assert isinstance(block, ConvBlock)
    assert [type(m) for m in block.children()] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.CELU]
    assert block.act.alpha == 0.075


def test_init_kaiming_fan_out_and_unit_bn():
    torch.manual_seed(0)
    model = build_backbone("resnet9")
    w = model.layer3[1].conv1.weight  # 512 out, 3x3: fan_out = 4608
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_any_in_channels():
    out = _forward(build_backbone("resnet9-tiny", in_channels=5), 16, channels=5)
    assert out.pooled.shape == (2, 64)


def test_input_resolution_check():
    model = build_backbone("resnet9")
    model.check_input_res(32)
    model.check_input_res((64, 32))
    for bad in (30, 4, 0):
        with pytest.raises(UserError, match="multiple of 8"):
            model.check_input_res(bad)


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(UserError) as e:
        build_backbone("resnet10")
    assert "resnet9-tiny" in str(e.value) and "resnet50-dilated" in str(e.value)
    assert {"resnet9", "resnet9-tiny", "resnet9-half"} <= set(BACKBONES)


@pytest.mark.parametrize("kw", [{"in_channels": 0}, {"out_dim": -1}, {"width": 0}, {"depth": 3}])
def test_bad_options_are_user_errors(kw):
    with pytest.raises(UserError):
        build_backbone("resnet9", **kw)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = build_backbone("resnet9-tiny").eval()
    other = build_backbone("resnet9-tiny", channels_last=True).eval()
    other.load_state_dict(model.state_dict())
    assert other.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x).pooled
        b = other(x.contiguous(memory_format=torch.channels_last)).pooled
    assert torch.allclose(a, b, atol=1e-5)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = build_backbone("resnet9-tiny")
    a.train()
    a(torch.rand(4, 3, 32, 32))  # move the BN running stats off their init
    b = build_backbone("resnet9-tiny")
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x).pooled, b(x).pooled)


def test_gradients_reach_every_parameter():
    model = build_backbone("resnet9-tiny")
    out = model(torch.rand(2, 3, 16, 16))
    out.pooled.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
