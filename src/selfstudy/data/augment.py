"""Batched, per-sample data augmentation on the training device.

Every op works on a whole batch of RGB images in [0, 1], ``(N, C, H, W)`` float, with no Python loop over
samples, and draws every random parameter from an explicit ``torch.Generator``: the same generator state
gives the same output, and each sample of a batch gets its own draw. (The paper's pipeline shares one
draw per chunk of the batch, docs/PAPER.md §6.6; per-sample draws are the plain version of the same idea.)

Geometric ops (flip, translation, resized crop, rot90) can be applied to dense targets too: pass
``targets={"segmentation": (N, H, W) long/uint8, "depth": (N, H, W) float}`` and get them back moved the
same way, sampled nearest, with :data:`TARGET_FILL` where pixels come from outside the image.

Each augmentation is a dataclass of its settings (the paper's values by default) with
``draw(n, size, generator)`` -> parameters and ``apply(x, params, targets)``; calling it does both.
Splitting the two lets a method reuse one draw, e.g. AMDIM gives both views of an image the same flip.
Outputs are contiguous NCHW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

import torch
import torch.nn.functional as F

from selfstudy.data.colour import luma
from selfstudy.errors import UserError

# Value written into a dense target where a geometric op pulls in pixels from outside the image:
# segmentation's ignore label, depth's "invalid".
TARGET_FILL = {"segmentation": 255, "depth": 0.0, "instance": 0}

Targets = Mapping[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------- helpers

def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device).to(device) * (hi - lo) + lo


def _bernoulli(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device).to(device) < p


def _randint(n: int, lo: int, hi: int, g: torch.Generator, device) -> torch.Tensor:
    """Integers in [lo, hi] inclusive, (n,) long."""
    return torch.randint(lo, hi + 1, (n,), generator=g, device=g.device).to(device)


def _gather_pixels(x: torch.Tensor, src: torch.Tensor, valid: torch.Tensor | None = None,
                   fill=0) -> torch.Tensor:
    """out[n, ..., p] = x[n, ..., src[n, p]] where valid[n, p] (or everywhere), else ``fill``.

    x: (N, ..., H, W) any dtype; src, valid: (N, H, W) flat source index into H*W and its mask.
    """
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    flat = x.reshape(n, -1, h * w)
    idx = src.reshape(n, 1, h * w).expand(-1, flat.shape[1], -1)
    out = torch.gather(flat, 2, idx)
    if valid is not None:
        fill = torch.as_tensor(fill, dtype=out.dtype, device=out.device)
        out = torch.where(valid.reshape(n, 1, h * w), out, fill)
    return out.reshape(x.shape)


def _fill(name: str):
    return TARGET_FILL.get(name, 0)


def _check_images(x: torch.Tensor, colour: bool) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise UserError(f"augmentation needs float (N, C, H, W) images in [0, 1], got "
                        f"{x.dtype} {tuple(x.shape)}")
    if colour and x.shape[1] != 3:
        raise UserError(f"colour augmentation needs 3-channel RGB, got {x.shape[1]} channels; turn "
                        f"the colour ops off for other inputs")


def _check_targets(x: torch.Tensor, targets: Targets | None) -> None:
    for name, t in (targets or {}).items():
        if t.shape[0] != x.shape[0] or t.shape[-2:] != x.shape[-2:]:
            raise UserError(f"target {name!r} has shape {tuple(t.shape)}; it must be (N, H, W) with "
                            f"N, H, W of the images {tuple(x.shape)}")


def _check_p(obj, *names: str) -> None:
    for name in names:
        p = getattr(obj, name)
        if not 0.0 <= p <= 1.0:
            raise UserError(f"{type(obj).__name__}.{name} must be a probability in [0, 1], got {p}")


def grayscale(x: torch.Tensor, weights: tuple[float, float, float] | None = None) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, H, W) with every channel set to the grey value: the channel mean (the
    paper's choice) when ``weights`` is None, else the weighted sum (e.g. :data:`colour.LUMA`)."""
    if weights is None:
        grey = x.mean(dim=1, keepdim=True)
    else:
        grey = (x * x.new_tensor(weights).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return grey.expand_as(x).contiguous()


def rotate90(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by ``k[n]`` quarter turns counter-clockwise, as ``torch.rot90(x[n], k[n],
    dims=(-2, -1))``.

    x: (N, ..., H, W) with H == W (images or dense targets, any dtype); k: (N,) integer, any values
    (taken mod 4). Exact: a pure index gather.
    """
    h, w = x.shape[-2:]
    if h != w:
        raise UserError(f"rotate90 needs square images, got {h}x{w}")
    k = k.to(x.device).long().remainder(4).view(-1, 1, 1)
    i = torch.arange(h, device=x.device).view(1, h, 1)
    j = torch.arange(w, device=x.device).view(1, 1, w)
    last = h - 1
    # Source pixel of output (i, j) for k = 0, 1, 2, 3 (counter-clockwise quarter turns).
    row = torch.where(k == 0, i, torch.where(k == 1, j, torch.where(k == 2, last - i, last - j)))
    col = torch.where(k == 0, j, torch.where(k == 1, last - i, torch.where(k == 2, last - j, i)))
    src = (row * w + col).expand(x.shape[0], h, w)
    return _gather_pixels(x, src)


def flip_translate(x: torch.Tensor, flip: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                   fill=0.0) -> torch.Tensor:
    """Per sample: flip left-right where ``flip[n]``, then shift by (dy[n], dx[n]) pixels (positive:
    down/right), filling pixels shifted in with ``fill``.

    x: (N, ..., H, W) any dtype; flip: (N,) bool; dy, dx: (N,) long. The paper's "zero-pad by p and
    crop back" is this shift with |dy|, |dx| <= p.
    """
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    sy = torch.arange(h, device=x.device).view(1, h) - dy.view(n, 1)
    sx = torch.arange(w, device=x.device).view(1, w) - dx.view(n, 1)
    valid = ((sy >= 0) & (sy < h)).view(n, h, 1) & ((sx >= 0) & (sx < w)).view(n, 1, w)
    sx = torch.where(flip.view(n, 1), w - 1 - sx, sx)
    src = sy.clamp(0, h - 1).view(n, h, 1) * w + sx.clamp(0, w - 1).view(n, 1, w)
    return _gather_pixels(x, src, valid, fill)


def _result(x: torch.Tensor, targets: Targets | None):
    """What an augmentation returns: ``x`` alone, or ``(x, targets)`` when the caller passed targets."""
    return x.contiguous() if targets is None else (x.contiguous(), dict(targets))


# ------------------------------------------------------------------------------------- paper pipeline

@dataclass
class PaperAugment:
    """The paper's on-GPU augmentation (docs/PAPER.md §6.6), per sample, on RGB in [0, 1].

    In order: colour jitter (``jitter_p`` of samples: per channel ``c + (x - c) * 2**(gain * N(0,1))
    + shift * N(0,1)``), greyscale (``grayscale_p``: all channels set to their mean), horizontal flip
    (``flip_p``), translation (zero-pad by ``res // 8`` and crop back: ``crop_keep_p`` of samples are
    left in place, the rest get a uniform shift in [-pad, pad]^2, as the paper's option list), cutout (always when on: one ``res // 4`` square set to
    ``cutout_fill``, fully inside the image).

    The paper jitters normalised LAB, where a channel's std is 1 and its mean 0. On RGB in [0, 1] the
    same relative jitter scales about ``jitter_centre`` (a typical channel mean) and shifts by
    ``jitter_shift = 0.25 x 0.17`` (0.17 ~ a typical RGB channel std); results are clamped to [0, 1].
    Padding and cutout are black here (the paper's zeros were the dataset mean colour).
    """

    colour_jitter: bool = True
    grayscale: bool = True
    flip: bool = True
    crop: bool = True
    cutout: bool = True
    jitter_p: float = 0.8
    jitter_gain: float = 0.25
    jitter_shift: float = 0.04
    jitter_centre: float = 0.35
    grayscale_p: float = 0.25
    flip_p: float = 0.5
    crop_keep_p: float = 0.2
    crop_pad: int | None = None      # pixels; default res // 8
    cutout_size: int | None = None   # pixels; default res // 4
    cutout_fill: float = 0.0

    def __post_init__(self):
        _check_p(self, "jitter_p", "grayscale_p", "flip_p", "crop_keep_p")
        for name in ("crop_pad", "cutout_size"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise UserError(f"PaperAugment.{name} must be a non-negative number of pixels, got {v}")

    def draw(self, n: int, size: tuple[int, int], generator: torch.Generator,
             device=None) -> dict[str, torch.Tensor]:
        """Per-sample parameters for ``n`` images of ``size = (H, W)``, on ``device``."""
        g, dev = generator, device or generator.device
        h, w = size
        p: dict[str, torch.Tensor] = {}
        if self.colour_jitter:
            on = _bernoulli(n, self.jitter_p, g, dev).view(n, 1, 1, 1)
            gain = torch.randn(n, 3, 1, 1, generator=g, device=g.device).to(dev)
            shift = torch.randn(n, 3, 1, 1, generator=g, device=g.device).to(dev)
            p["jitter_gain"] = torch.where(on, torch.exp2(self.jitter_gain * gain), 1.0)
            p["jitter_shift"] = torch.where(on, self.jitter_shift * shift, 0.0)
        if self.grayscale:
            p["grayscale"] = _bernoulli(n, self.grayscale_p, g, dev)
        if self.flip:
            p["flip"] = _bernoulli(n, self.flip_p, g, dev)
        if self.crop:
            pad = min(h, w) // 8 if self.crop_pad is None else self.crop_pad
            move = ~_bernoulli(n, self.crop_keep_p, g, dev)
            p["dy"] = _randint(n, -pad, pad, g, dev) * move
            p["dx"] = _randint(n, -pad, pad, g, dev) * move
        if self.cutout:
            s = min(h, w) // 4 if self.cutout_size is None else min(self.cutout_size, h, w)
            p["cut_y"] = _randint(n, 0, h - s, g, dev)
            p["cut_x"] = _randint(n, 0, w - s, g, dev)
            p["cut_size"] = torch.full((n,), s, dtype=torch.long, device=dev)
        return p

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor], targets: Targets | None = None):
        """Apply drawn ``params`` to x (N, 3, H, W) RGB [0, 1] (and geometry to ``targets``)."""
        _check_images(x, self.colour_jitter or self.grayscale)
        _check_targets(x, targets)
        n = x.shape[0]
        if "jitter_gain" in params:
            c = self.jitter_centre
            x = ((x - c) * params["jitter_gain"] + (c + params["jitter_shift"])).clamp_(0, 1)
        if "grayscale" in params:
            grey = x.mean(dim=1, keepdim=True)
            x = torch.where(params["grayscale"].view(n, 1, 1, 1), grey, x)
        if "flip" in params or "dy" in params:
            zero = torch.zeros(n, dtype=torch.long, device=x.device)
            flip = params.get("flip", torch.zeros(n, dtype=torch.bool, device=x.device))
            dy, dx = params.get("dy", zero), params.get("dx", zero)
            x = flip_translate(x, flip, dy, dx, fill=0.0)
            if targets is not None:
                targets = {k: flip_translate(t, flip, dy, dx, _fill(k)) for k, t in targets.items()}
        if "cut_y" in params:
            h, w = x.shape[-2:]
            s = params["cut_size"].view(n, 1, 1)
            ys = torch.arange(h, device=x.device).view(1, h, 1) - params["cut_y"].view(n, 1, 1)
            xs = torch.arange(w, device=x.device).view(1, 1, w) - params["cut_x"].view(n, 1, 1)
            hole = ((ys >= 0) & (ys < s)) & ((xs >= 0) & (xs < s))
            x = x.masked_fill(hole.unsqueeze(1), self.cutout_fill)
        return _result(x, targets)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, targets: Targets | None = None):
        """x: (N, 3, H, W) RGB in [0, 1] -> augmented x, or ``(x, targets)`` when targets are given."""
        return self.apply(x, self.draw(x.shape[0], tuple(x.shape[-2:]), generator, x.device), targets)


# ------------------------------------------------------------------------------------ SimCLR pipeline

# RGB <-> YIQ: hue rotation is a rotation of the (I, Q) chroma plane about the luma axis.
_YIQ_FROM_RGB = torch.tensor([[0.299, 0.587, 0.114],
                              [0.595716, -0.274453, -0.321263],
                              [0.211456, -0.522591, 0.311135]])
_RGB_FROM_YIQ = torch.linalg.inv(_YIQ_FROM_RGB)


@dataclass
class SimCLRAugment:
    """SimCLR's augmentation (Chen et al. 2020), per sample, on RGB in [0, 1].

    In order: random resized crop (area fraction in ``crop_scale``, aspect ratio in ``crop_ratio``,
    log-uniform; bilinear, to ``size`` or the input size) with horizontal flip (``flip_p``); colour
    jitter with ``jitter_p``: brightness, contrast, saturation, hue in that fixed order (torchvision
    shuffles the order; hue is a rotation of the YIQ chroma plane by ``2 pi h``, a close and cheap
    stand-in for an HSV hue shift); greyscale (``grayscale_p``, BT.601 luma); Gaussian blur
    (``blur_p``, sigma uniform in ``blur_sigma`` px, kernel ~10% of the side; off by default because
    at 32 px it erases the object).
    """

    crop: bool = True
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    size: int | None = None
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self):
        _check_p(self, "flip_p", "jitter_p", "grayscale_p", "blur_p")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise UserError(f"SimCLRAugment.crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise UserError(f"SimCLRAugment.crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"SimCLRAugment.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise UserError(f"SimCLRAugment.hue must be in [0, 0.5], got {self.hue}")
        if self.blur_sigma[0] <= 0 or self.blur_sigma[1] < self.blur_sigma[0]:
            raise UserError(f"SimCLRAugment.blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")

    def draw(self, n: int, size: tuple[int, int], generator: torch.Generator,
             device=None) -> dict[str, torch.Tensor]:
        """Per-sample parameters for ``n`` images of ``size = (H, W)``, on ``device``."""
        g, dev = generator, device or generator.device
        h, w = size
        p: dict[str, torch.Tensor] = {}
        if self.crop:
            # Ten tries per sample, as torchvision, all at once; the first that fits wins, else the
            # whole image.
            tries = 10
            area = torch.empty(n, tries, device=g.device).uniform_(*self.crop_scale, generator=g)
            logr = torch.empty(n, tries, device=g.device).uniform_(
                math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]), generator=g)
            r = torch.exp(logr)
            cw = torch.sqrt(area * r * (h / w))  # box width as a fraction of the image width
            ch = torch.sqrt(area / r * (w / h))
            ok = (cw <= 1) & (ch <= 1)
            first = torch.argmax(ok.int(), dim=1, keepdim=True)
            any_ok = ok.any(dim=1)
            cw = torch.where(any_ok, cw.gather(1, first).squeeze(1), 1.0)
            ch = torch.where(any_ok, ch.gather(1, first).squeeze(1), 1.0)
            u = torch.rand(n, 2, generator=g, device=g.device)
            p["crop_w"], p["crop_h"] = cw.to(dev), ch.to(dev)
            p["crop_cx"] = ((u[:, 0] * 2 - 1) * (1 - cw)).to(dev)  # centre in [-1, 1] coordinates
            p["crop_cy"] = ((u[:, 1] * 2 - 1) * (1 - ch)).to(dev)
        p["flip"] = _bernoulli(n, self.flip_p, g, dev)
        on = _bernoulli(n, self.jitter_p, g, dev)
        jitter = torch.rand(n, 4, generator=g, device=g.device).to(dev) * 2 - 1  # U(-1, 1)
        one = torch.ones(n, device=dev)
        p["brightness"] = torch.where(on, 1 + self.brightness * jitter[:, 0], one)
        p["contrast"] = torch.where(on, 1 + self.contrast * jitter[:, 1], one)
        p["saturation"] = torch.where(on, 1 + self.saturation * jitter[:, 2], one)
        p["hue"] = torch.where(on, self.hue * jitter[:, 3], 0 * one)
        p["grayscale"] = _bernoulli(n, self.grayscale_p, g, dev)
        if self.blur_p > 0:
            blur = _bernoulli(n, self.blur_p, g, dev)
            sigma = _uniform(n, *self.blur_sigma, g, dev)
            p["blur_sigma"] = torch.where(blur, sigma, 0.0)
        return p

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor], targets: Targets | None = None):
        """Apply drawn ``params`` to x (N, 3, H, W) RGB [0, 1] (and geometry to ``targets``)."""
        _check_images(x, True)
        _check_targets(x, targets)
        n, _, h, w = x.shape
        out_h, out_w = (self.size, self.size) if self.size else (h, w)
        # Crop, flip and resize are one bilinear resampling (exact at pixel centres when identity).
        one, zero = torch.ones(n, device=x.device), torch.zeros(n, device=x.device)
        sx = params.get("crop_w", one) * torch.where(params["flip"], -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = sx, params.get("crop_cx", zero)
        theta[:, 1, 1], theta[:, 1, 2] = params.get("crop_h", one), params.get("crop_cy", zero)
        grid = F.affine_grid(theta, [n, 1, out_h, out_w], align_corners=False)
        x = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                          align_corners=False)
        if targets is not None:
            targets = {k: _resample_target(t, grid) for k, t in targets.items()}
        x = _colour_jitter(x, params["brightness"], params["contrast"], params["saturation"],
                           params["hue"])
        x = torch.where(params["grayscale"].view(n, 1, 1, 1), luma(x).expand_as(x), x)
        if "blur_sigma" in params:
            x = gaussian_blur(x, params["blur_sigma"], kernel_size=max(3, (min(h, w) // 10) | 1))
        return _result(x, targets)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, targets: Targets | None = None):
        """x: (N, 3, H, W) RGB in [0, 1] -> augmented x, or ``(x, targets)`` when targets are given."""
        return self.apply(x, self.draw(x.shape[0], tuple(x.shape[-2:]), generator, x.device), targets)


def _resample_target(t: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Nearest-sample a (N, H, W) target on ``grid`` (N, h, w, 2) (inside the image), keeping dtype."""
    v = F.grid_sample(t.unsqueeze(1).float(), grid, mode="nearest", padding_mode="border",
                      align_corners=False).squeeze(1)
    return v.round().to(t.dtype) if not t.is_floating_point() else v.to(t.dtype)


def _colour_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                   saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """torchvision-style jitter with per-sample factors (N,), clamping to [0, 1] after each step."""
    n = x.shape[0]
    v = lambda a: a.view(n, 1, 1, 1)  # noqa: E731
    x = (x * v(brightness)).clamp(0, 1)
    mean = luma(x).mean(dim=(2, 3), keepdim=True)
    x = (v(contrast) * x + (1 - v(contrast)) * mean).clamp(0, 1)
    x = (v(saturation) * x + (1 - v(saturation)) * luma(x)).clamp(0, 1)
    angle = hue * (2 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(n, 3, 3, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = _RGB_FROM_YIQ.to(x.device) @ rot @ _YIQ_FROM_RGB.to(x.device)  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each sample with its own Gaussian: x (N, C, H, W), sigma (N,) pixels (0: unchanged),
    ``kernel_size`` odd. Separable, one grouped conv per axis, reflect padding."""
    n, c, h, w = x.shape
    r = kernel_size // 2
    d = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-3).view(n, 1)
    k = torch.exp(-0.5 * (d.view(1, -1) / s) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, K)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(n * c, 1, -1, 1), groups=n * c)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(n * c, 1, 1, -1), groups=n * c)
    return y.view(n, c, h, w)


AUGMENTS = {"paper": PaperAugment, "simclr": SimCLRAugment}


def build_augment(name: str, **kw) -> PaperAugment | SimCLRAugment:
    """An augmentation by name (``paper`` or ``simclr``) with field overrides."""
    if name not in AUGMENTS:
        raise UserError(f"unknown augmentation {name!r}; allowed: {', '.join(AUGMENTS)}")
    allowed = {f.name for f in fields(AUGMENTS[name])}
    bad = sorted(set(kw) - allowed)
    if bad:
        raise UserError(f"unknown option(s) {', '.join(bad)} for augmentation {name!r}; allowed: "
                        f"{', '.join(sorted(allowed))}")
    return AUGMENTS[name](**kw)
