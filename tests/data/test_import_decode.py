"""decode_image: real image files of every common kind, down to pixel values and orientation."""

import io

import numpy as np
import pytest
from PIL import Image

from selfstudy.data.decode import DecodeError, decode_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def halves(w=16, h=8, left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = left
    a[:, w // 2:] = right
    return Image.fromarray(a)


def test_png_at_its_own_size_is_unchanged():
    a = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = decode_image(encode(Image.fromarray(a), "PNG"), 16)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert np.array_equal(out, a)


def test_crop_takes_the_centre_and_pad_keeps_everything():
    img = halves(32, 16, left=(255, 0, 0), right=(0, 0, 255))  # 32 wide, 16 high
    crop = decode_image(encode(img, "PNG"), 16)  # 16x16 centre: 8 red columns, 8 blue
    assert (crop[:, :7, 0] == 255).all() and (crop[:, :7, 2] == 0).all()
    assert (crop[:, 9:, 2] == 255).all() and (crop[:, 9:, 0] == 0).all()
    pad = decode_image(encode(img, "PNG"), 16, fit="pad")  # 16 wide, 8 high, centred: black bands
    assert (pad[:4] == 0).all() and (pad[12:] == 0).all()
    assert (pad[5:11, :7, 0] == 255).all() and (pad[5:11, 9:, 2] == 255).all()


def test_greyscale_palette_and_16_bit_become_rgb():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = decode_image(encode(Image.fromarray(grey, "L"), "PNG"), 8)
    assert np.array_equal(out, np.repeat(grey[..., None], 3, axis=2))

    pal = Image.new("P", (8, 8))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0] * 32 + [1] * 32)
    out = decode_image(encode(pal, "PNG"), 8)
    assert (out[:4] == [10, 20, 30]).all() and (out[4:] == [200, 100, 50]).all()

    deep = np.full((8, 8), 65535, np.uint16)
    deep[:4] = 257 * 100
    out = decode_image(encode(Image.fromarray(deep), "PNG"), 8)
    assert (out[:4] == 100).all() and (out[4:] == 255).all()


def test_transparency_is_composited_onto_black():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :4, 3] = 255   # opaque
    rgba[:, 4:6, 3] = 0    # fully transparent
    rgba[:, 6:, 3] = 128   # half
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), 8).astype(int)
    assert (out[:, :4] == (200, 100, 50)).all()
    assert (out[:, 4:6] == 0).all()
    assert np.abs(out[:, 6:] - np.array([100, 50, 25])).max() <= 1

    pal = Image.new("P", (8, 8))
    pal.putpalette([255, 255, 255, 0, 255, 0] + [0] * 762)
    pal.putdata([0] * 32 + [1] * 32)
    pal.info["transparency"] = 0  # colour 0 (white) is transparent
    out = decode_image(encode(pal, "PNG", transparency=0), 8)
    assert (out[:4] == 0).all() and (out[4:] == (0, 255, 0)).all()


def test_jpeg_and_cmyk_decode_close_to_their_colour():
    img = Image.new("RGB", (40, 30), (30, 160, 220))
    out = decode_image(encode(img, "JPEG", quality=95), 16).astype(int)
    assert np.abs(out - [30, 160, 220]).max() <= 4
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # pure red in CMYK
    out = decode_image(encode(cmyk, "JPEG", quality=95), 8).astype(int)
    assert np.abs(out - [255, 0, 0]).max() <= 6


def test_exif_orientation_is_applied():
    """Stored 16x8 with red on the left; EXIF orientation 6 says "rotate 90 degrees clockwise to view",
    so the image as seen is 8 wide, 16 high, red on top."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves(16, 8), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data, 8).astype(int)  # 8x16 viewed, centre 8x8 crop: rows 4..11 of it
    top, bottom = out[:3].reshape(-1, 3).mean(0), out[5:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50       # red on top
    assert bottom[2] > 200 and bottom[0] < 50  # blue below
    left, right = out[:, :3].reshape(-1, 3).mean(0), out[:, 5:].reshape(-1, 3).mean(0)
    assert np.abs(left - right).max() < 10     # no left/right difference any more
    plain = decode_image(encode(halves(16, 8), "JPEG", quality=95), 8).astype(int)
    assert plain[:, :3, 0].mean() > 200 and plain[:, 5:, 2].mean() > 200  # without the tag: red left


@pytest.mark.parametrize("data, why", [
    (b"this is a text file, not an image\n", "not an image"),
    (b"", "not an image"),
])
def test_non_images_are_refused(data, why):
    with pytest.raises(DecodeError, match=why):
        decode_image(data, 8)


def test_truncated_files_are_refused():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for fmt in ("PNG", "JPEG"):
        data = encode(img, fmt)
        with pytest.raises(DecodeError, match="corrupt or truncated"):
            decode_image(data[: len(data) // 2], 16)
