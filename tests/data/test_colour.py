import json

import numpy as np
import pytest
import torch

from selfstudy.data.colour import (PAPER_STATS, InputTransform, lab_to_rgb, rgb_to_lab,
                                   split_luma_chroma)
from selfstudy.errors import UserError

# skimage.color.rgb2lab on these sRGB colours (D65, 2° observer).
REFERENCE = [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
]


@pytest.mark.parametrize("rgb, lab", REFERENCE)
def test_rgb_to_lab_matches_skimage(rgb, lab):
    got = rgb_to_lab(torch.tensor(rgb), dim=-1)
    assert got.tolist() == pytest.approx(lab, abs=0.01)


def test_nchw_layout_and_dtype():
    x = torch.rand(2, 3, 4, 5)
    lab = rgb_to_lab(x)
    assert lab.shape == x.shape and lab.dtype == torch.float32
    per_pixel = rgb_to_lab(x.permute(0, 2, 3, 1), dim=-1).permute(0, 3, 1, 2)
    assert torch.allclose(lab, per_pixel, atol=1e-4)


def test_lab_round_trip():
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-4)


def test_conversion_stays_float32_under_bf16_autocast():
    x = torch.rand(2, 3, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lab = rgb_to_lab(x)
    assert lab.dtype == torch.float32
    assert torch.allclose(lab, rgb_to_lab(x))


def test_input_transform_defaults_to_the_papers_statistics():
    t = InputTransform("lab")
    assert t.state()["mean"] == pytest.approx(PAPER_STATS["lab"][0])
    x = torch.rand(2, 3, 4, 4)
    expected = (rgb_to_lab(x) - torch.tensor(PAPER_STATS["lab"][0]).view(1, 3, 1, 1)) \
        / torch.tensor(PAPER_STATS["lab"][1]).view(1, 3, 1, 1)
    assert torch.allclose(t(x), expected, atol=1e-5)


@pytest.mark.parametrize("space", ["rgb", "lab"])
def test_fit_normalises_its_data(space):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (64, 6, 6, 3), dtype=np.uint8)
    imgs[..., 0] //= 2  # channels with different statistics
    t = InputTransform.fit(imgs, space)
    y = t(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
    assert y.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0, 0, 0], abs=1e-4)
    assert y.std(dim=(0, 2, 3)).tolist() == pytest.approx([1, 1, 1], abs=1e-3)
    # a tensor gives the same statistics as the numpy array
    t2 = InputTransform.fit(torch.from_numpy(imgs), space)
    assert t2.state()["mean"] == pytest.approx(t.state()["mean"])


def test_fit_subsamples_evenly():
    imgs = np.zeros((100, 2, 2, 3), dtype=np.uint8)
    imgs[::2] = 255  # even images white, odd black
    t = InputTransform.fit(imgs, "rgb", max_images=3)  # rows 0, 50, 99: two white, one black
    assert t.state()["mean"] == pytest.approx([2 / 3] * 3, abs=1e-6)


def test_fit_keeps_constant_channels_finite():
    imgs = np.full((4, 2, 2, 3), 128, dtype=np.uint8)
    t = InputTransform.fit(imgs, "lab")
    assert torch.isfinite(t(torch.full((1, 3, 2, 2), 0.5))).all()


def test_state_round_trip_is_plain_json():
    t = InputTransform("rgb", [0.1, 0.2, 0.3], [0.5, 0.5, 0.25])
    state = json.loads(json.dumps(t.state()))
    u = InputTransform.from_state(state)
    x = torch.rand(1, 3, 2, 2)
    assert u.space == "rgb" and torch.equal(u(x), t(x))


@pytest.mark.parametrize("bad", [
    lambda: InputTransform("hsv"),
    lambda: InputTransform("rgb", [0, 0], [1, 1]),
    lambda: InputTransform("rgb", [0, 0, 0], [1, 0, 1]),
    lambda: InputTransform.from_state({"space": "lab"}),
    lambda: InputTransform.fit(np.zeros((4, 2, 2, 3), dtype=np.float32), "lab"),
    lambda: InputTransform.fit(np.zeros((4, 2, 2), dtype=np.uint8), "lab"),
])
def test_bad_input_is_a_user_error(bad):
    with pytest.raises(UserError):
        bad()


def test_luma_chroma_split():
    x = torch.randn(2, 3, 4, 4)
    l, ab = split_luma_chroma(x, "lab")
    assert torch.equal(l, x[:, :1]) and torch.equal(ab, x[:, 1:])
    grey = torch.rand(2, 1, 4, 4).expand(2, 3, 4, 4)
    y, chroma = InputTransform("rgb").split(grey)
    assert y.shape == (2, 1, 4, 4) and chroma.shape == (2, 2, 4, 4)
    assert torch.allclose(y, grey[:, :1]) and chroma.abs().max() < 1e-6
