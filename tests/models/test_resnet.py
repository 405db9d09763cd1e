import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.models import build_backbone

# torchvision's parameter counts (resnet50: 25,557,032, resnet18: 11,689,512) minus its fc
# (C*1000 + 1000), plus our prepool 1x1 conv to 256 (C*256 + 256).
RESNET50_PARAMS = 25_557_032 - (2048 * 1000 + 1000) + (2048 * 256 + 256)
RESNET18_PARAMS = 11_689_512 - (512 * 1000 + 1000) + (512 * 256 + 256)

# A few torchvision resnet50 state-dict entries and their shapes.
RESNET50_KEYS = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_mean": (64,),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.weight": (256,),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (512, 256, 1, 1),
    "layer3.5.bn3.num_batches_tracked": (),
    "layer4.2.conv3.weight": (2048, 512, 1, 1),
}


@pytest.fixture(scope="module")
def r50():
    return build_backbone("resnet50").eval()


def test_resnet50_counts_match_torchvision(r50):
    assert r50.num_parameters() == RESNET50_PARAMS == 24_032_576
    assert build_backbone("resnet18").num_parameters() == RESNET18_PARAMS


def test_resnet50_state_dict_uses_torchvision_names(r50):
    sd = r50.state_dict()
    for key, shape in RESNET50_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    # torchvision's resnet50 state dict has 320 entries, 2 of them fc; ours swaps fc for prepool.
    assert len(sd) == 320
    assert sorted(k for k in sd if not k.startswith("layer") and "bn1" not in k) == \
        ["conv1.weight", "prepool.bias", "prepool.weight"]
    assert tuple(sd["prepool.weight"].shape) == (256, 2048, 1, 1)
    # the stride of a Bottleneck sits on its 3x3 conv (torchvision v1.5)
    assert r50.layer2[0].conv2.stride == (2, 2) and r50.layer2[0].conv1.stride == (1, 1)


def test_a_torchvision_style_checkpoint_loads_except_fc(r50):
    sd = {k: v for k, v in r50.state_dict().items() if not k.startswith("prepool")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    other = build_backbone("resnet50")
    result = other.load_state_dict(sd, strict=False)
    assert sorted(result.missing_keys) == ["prepool.bias", "prepool.weight"]
    assert sorted(result.unexpected_keys) == ["fc.bias", "fc.weight"]


def test_resnet50_shapes_without_stem_maxpool(r50):
    with torch.no_grad():
        out = r50(torch.randn(1, 3, 64, 64))
    assert out.pooled.shape == (1, 256)
    assert out.maps["prepool"].shape == (1, 256, 4, 4)  # stride 16
    assert r50.amdim_maps == ("layer3.4", "layer4.1")
    assert out.maps["layer3.4"].shape == (1, 1024, 8, 8)
    assert out.maps["layer4.1"].shape == (1, 2048, 4, 4)
    for name, t in out.maps.items():
        assert t.shape[1] == r50.map_channels[name], name
        assert t.shape[-1] == r50.map_size(name, 64), name


@pytest.mark.parametrize("res, side", [(32, 2), (64, 4), (128, 8)])
def test_resnet18_shapes(res, side):
    model = build_backbone("resnet18-tiny").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, res, res))
    assert out.maps["prepool"].shape == (1, 64, side, side)
    assert model.amdim_maps == ("layer3.1", "layer4.1")


@pytest.mark.parametrize("name, channels", [("resnet18-dilated", 512), ("resnet50-dilated", 2048)])
def test_dilated_is_stride_8(name, channels):
    model = build_backbone(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128))
    assert out.maps["prepool"].shape == (1, 512, 16, 16)
    assert out.maps["layer4"].shape == (1, channels, 16, 16)
    assert model.dense_map == "prepool" and model.res_multiple == 8
    # same parameters as the undilated model: checkpoints move between them
    plain = build_backbone(name.replace("-dilated", ""), out_dim=512)
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


def test_resnet50_half_is_base_width_32_with_a_64_stem():
    model = build_backbone("resnet50-half", in_channels=2)
    sd = model.state_dict()
    assert tuple(sd["conv1.weight"].shape) == (64, 2, 7, 7)
    assert tuple(sd["layer1.0.conv1.weight"].shape) == (32, 64, 1, 1)
    assert model.map_channels["layer4"] == 1024
    assert model.out_dim == 128


def test_resnet_input_resolution_check(r50):
    r50.check_input_res(64)
    with pytest.raises(UserError, match="multiple of 16"):
        r50.check_input_res(40)
    build_backbone("resnet18-dilated").check_input_res(72)


def test_resnet_state_dict_round_trip_and_channels_last():
    torch.manual_seed(0)
    a = build_backbone("resnet18-tiny").eval()
    b = build_backbone("resnet18-tiny", channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ya = a(x).pooled
        yb = b(x.contiguous(memory_format=torch.channels_last)).pooled
    assert torch.allclose(ya, yb, atol=1e-5)
