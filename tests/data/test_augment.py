import pytest
import torch

from selfstudy.data.augment import (TARGET_FILL, PaperAugment, SimCLRAugment, build_augment,
                                    flip_translate, gaussian_blur, grayscale, rotate90)
from selfstudy.errors import UserError

GEOMETRY_ONLY = dict(colour_jitter=False, grayscale=False, cutout=False)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def coordinate_image(n, h, w):
    """Images whose pixels encode their own (row, col): R = (row+1)/(h+1), G = (col+1)/(w+1), B = 1;
    every real pixel is non-black, so shifted-in (black) pixels are recognisable."""
    rows = (torch.arange(h).float() + 1) / (h + 1)
    cols = (torch.arange(w).float() + 1) / (w + 1)
    x = torch.ones(n, 3, h, w)
    x[:, 0] = rows.view(h, 1)
    x[:, 1] = cols.view(1, w)
    return x


def decode(x):
    h, w = x.shape[-2:]
    return (x[:, 0] * (h + 1) - 1), (x[:, 1] * (w + 1) - 1)


def coordinate_targets(n, h, w):
    flat = torch.arange(h * w).view(1, h, w).expand(n, h, w)
    return {"segmentation": flat.clone(), "depth": (flat + 1).float()}


@pytest.mark.parametrize("aug", [PaperAugment(), SimCLRAugment(blur_p=0.5)])
def test_same_seed_same_output(aug):
    x = torch.rand(8, 3, 16, 16)
    a, b = aug(x, gen(1)), aug(x, gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, gen(2)))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_per_sample_parameters_differ_within_a_batch():
    p = PaperAugment().draw(64, (32, 32), gen())
    assert 0 < p["flip"].sum() < 64
    assert len(set(p["dx"].tolist())) > 3 and len(set(p["cut_x"].tolist())) > 3
    assert len(set(p["jitter_gain"][:, 0].flatten().tolist())) > 10
    q = SimCLRAugment().draw(64, (32, 32), gen())
    assert len(set(q["crop_w"].tolist())) > 10 and len(set(q["hue"].tolist())) > 10


def test_paper_probabilities_over_a_big_batch():
    n, res = 20000, 32
    p = PaperAugment().draw(n, (res, res), gen())
    jittered = (p["jitter_gain"] != 1).any(dim=1).flatten().float().mean()
    assert jittered == pytest.approx(0.8, abs=0.02)
    assert p["grayscale"].float().mean() == pytest.approx(0.25, abs=0.02)
    assert p["flip"].float().mean() == pytest.approx(0.5, abs=0.02)
    still = ((p["dx"] == 0) & (p["dy"] == 0)).float().mean()
    pad = res // 8
    assert still == pytest.approx(0.2 + 0.8 / (2 * pad + 1) ** 2, abs=0.02)
    assert p["dx"].abs().max() == pad
    # the gain is 2 ** (0.25 N(0, 1))
    log_gain = torch.log2(p["jitter_gain"][(p["jitter_gain"] != 1)])
    assert log_gain.std() == pytest.approx(0.25, abs=0.02)


def test_simclr_probabilities_and_crop_boxes():
    n = 20000
    p = SimCLRAugment().draw(n, (32, 32), gen())
    assert p["grayscale"].float().mean() == pytest.approx(0.2, abs=0.02)
    assert (p["brightness"] != 1).float().mean() == pytest.approx(0.8, abs=0.02)
    assert p["hue"].abs().max() <= 0.1
    area = p["crop_w"] * p["crop_h"]
    assert area.min() >= 0.2 - 1e-6 and area.max() <= 1 + 1e-6
    ratio = p["crop_w"] / p["crop_h"]
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
    assert (p["crop_cx"].abs() + p["crop_w"] <= 1 + 1e-6).all()  # the box lies inside the image


def test_paper_flip_and_crop_move_targets_with_the_image():
    n, res = 64, 16
    x = coordinate_image(n, res, res)
    t = coordinate_targets(n, res, res)
    y, moved = PaperAugment(**GEOMETRY_ONLY)(x, gen(), targets=t)
    seg, depth = moved["segmentation"], moved["depth"]
    assert seg.dtype == torch.long and depth.dtype == torch.float32
    inside = y.amax(dim=1) > 0
    outside = ~inside
    assert outside.any() and inside.any()
    assert (seg[outside] == TARGET_FILL["segmentation"]).all()
    assert (depth[outside] == 0).all()
    r, c = decode(y)
    expect = (r.round() * res + c.round()).long()
    assert torch.equal(seg[inside], expect[inside])
    assert torch.equal(depth[inside], expect[inside].float() + 1)
    # flipped samples really are mirrored: column decreases left to right somewhere
    assert (c[:, :, 1:] < c[:, :, :-1]).any()


def test_flip_translate_by_hand():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    y = flip_translate(x, torch.tensor([True]), torch.tensor([1]), torch.tensor([0]), fill=-1)
    assert y[0, 0].tolist() == [[-1, -1, -1], [2, 1, 0], [5, 4, 3]]


def test_simclr_crop_moves_targets_with_the_image():
    n, res = 32, 16
    x = coordinate_image(n, res, res)
    t = coordinate_targets(n, res, res)
    aug = SimCLRAugment(jitter_p=0, grayscale_p=0)
    y, moved = aug(x, gen(), targets=t)
    r, c = decode(y)
    seg = moved["segmentation"]
    # bilinear image coordinates vs nearest target coordinates: within half a pixel
    assert ((seg // res).float() - r).abs().max() <= 0.5 + 1e-3
    assert ((seg % res).float() - c).abs().max() <= 0.5 + 1e-3
    assert torch.equal(moved["depth"], seg.float() + 1)


def test_simclr_output_size():
    aug = SimCLRAugment(size=8)
    y, moved = aug(torch.rand(2, 3, 16, 16), gen(), targets={"segmentation": torch.zeros(2, 16, 16,
                                                                                       dtype=torch.uint8)})
    assert y.shape == (2, 3, 8, 8) and moved["segmentation"].shape == (2, 8, 8)
    assert moved["segmentation"].dtype == torch.uint8


def test_rotate90_matches_torch_rot90():
    x = torch.randn(8, 3, 5, 5)
    k = torch.tensor([0, 1, 2, 3, 4, -1, 5, 2])
    y = rotate90(x, k)
    for i in range(8):
        assert torch.equal(y[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
    seg = torch.randint(0, 11, (8, 5, 5), dtype=torch.uint8)
    rs = rotate90(seg, k)
    assert rs.dtype == torch.uint8
    for i in range(8):
        assert torch.equal(rs[i], torch.rot90(seg[i], int(k[i]), dims=(-2, -1)))
    with pytest.raises(UserError, match="square"):
        rotate90(torch.zeros(1, 3, 4, 5), torch.tensor([1]))


def test_grayscale_makes_channels_equal():
    x = torch.rand(16, 3, 8, 8)
    aug = PaperAugment(colour_jitter=False, flip=False, crop=False, cutout=False, grayscale_p=1.0)
    y = aug(x, gen())
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    assert torch.allclose(y[:, 0], x.mean(dim=1))
    s = SimCLRAugment(crop=False, flip_p=0, jitter_p=0, grayscale_p=1.0)(x, gen())
    assert torch.allclose(s[:, 0], s[:, 2])
    assert torch.allclose(s[:, 0], grayscale(x, (0.299, 0.587, 0.114))[:, 0], atol=1e-6)


@pytest.mark.parametrize("res", [16, 32])
def test_cutout_zeroes_exactly_a_quarter_res_square(res):
    x = torch.ones(32, 3, res, res)
    y = PaperAugment(colour_jitter=False, grayscale=False, flip=False, crop=False)(x, gen())
    s = res // 4
    zero = y == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    for m in zero[:, 0]:
        assert m.sum() == s * s
        rows, cols = m.any(dim=1).nonzero(), m.any(dim=0).nonzero()
        assert rows.max() - rows.min() + 1 == s and cols.max() - cols.min() + 1 == s


def test_colour_ops_leave_targets_alone():
    x = torch.rand(4, 3, 8, 8)
    seg = torch.randint(0, 11, (4, 8, 8))
    _, moved = PaperAugment(flip=False, crop=False)(x, gen(), targets={"segmentation": seg})
    assert torch.equal(moved["segmentation"], seg)


def test_shared_draw_gives_two_views_the_same_flip():
    aug = PaperAugment()
    x = torch.rand(8, 3, 16, 16)
    p1 = aug.draw(8, (16, 16), gen(1))
    p2 = aug.draw(8, (16, 16), gen(2))
    p2["flip"] = p1["flip"]
    assert aug.apply(x, p2).shape == x.shape


def test_gaussian_blur_per_sample():
    x = torch.rand(2, 3, 12, 12)
    y = gaussian_blur(x, torch.tensor([0.0, 2.0]), kernel_size=5)
    assert torch.allclose(y[0], x[0], atol=1e-6)
    assert y[1].std() < x[1].std()
    assert y[1].mean() == pytest.approx(x[1].mean().item(), abs=0.02)


@pytest.mark.parametrize("bad", [
    lambda: PaperAugment(flip_p=1.5),
    lambda: SimCLRAugment(crop_scale=(0.5, 0.2)),
    lambda: SimCLRAugment(hue=0.7),
    lambda: build_augment("mixup"),
    lambda: build_augment("paper", colour=False),
    lambda: PaperAugment()(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), gen()),
    lambda: PaperAugment()(torch.zeros(2, 3, 8, 8), gen(), targets={"depth": torch.zeros(2, 4, 4)}),
])
def test_bad_settings_and_inputs_are_user_errors(bad):
    with pytest.raises(UserError):
        bad()


def test_build_augment():
    aug = build_augment("paper", cutout=False)
    assert isinstance(aug, PaperAugment) and not aug.cutout
