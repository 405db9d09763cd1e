"""One image file to one square RGB array at the study resolution, with Pillow.

:func:`decode_image` applies the file's EXIF orientation (a phone photo taken sideways is stored
sideways with a tag saying so), converts every mode to RGB (greyscale ``L``/``1`` and 16-bit ``I;16``
replicated to three channels, palette ``P`` through its palette, ``RGBA``/``LA``/``PA`` composited onto
black, ``CMYK`` and ``YCbCr`` through Pillow), then fits it to ``res x res``:

- ``crop`` (default): scale the shorter side to ``res`` and cut the centre square, as the usual
  ImageNet-style evaluation transform does;
- ``pad``: scale the longer side to ``res`` and pad the rest with black, centred (nothing is cut off).

Resampling is bicubic (Pillow's ``ImageOps.fit`` / ``ImageOps.pad``); a JPEG is first decoded at a
reduced scale when that still leaves at least ``res`` pixels (``Image.draft``), which is several times
faster on large photographs and changes the result by less than the resampling itself.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: How an image is fitted to the square: ``crop`` the centre, or ``pad`` with black.
FITS = ("crop", "pad")
#: File name endings read as images (lower case); other files are not images to Pillow either.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class DecodeError(Exception):
    """A file that is not a readable image; the message says why (one line)."""


def decode_image(data: bytes, res: int, fit: str = "crop") -> np.ndarray:
    """Decode the bytes of one image file: uint8 (res, res, 3) RGB.

    Raises:
        DecodeError: not an image Pillow can read, truncated, corrupt, or too large (Pillow's
            decompression-bomb limit).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF quirks and large-image warnings: the result decides
            img = Image.open(io.BytesIO(data))
            if img.format == "JPEG" and fit == "crop":
                img.draft(None, (res, res))
            elif img.format == "JPEG":
                # Padding scales the longer side to res: both sides may shrink to res / aspect first.
                w, h = img.size
                img.draft(None, (max(1, res * w // max(w, h)), max(1, res * h // max(w, h))))
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
            size = (res, res)
            out = (ImageOps.fit(rgb, size, method=Image.BICUBIC) if fit == "crop"
                   else ImageOps.pad(rgb, size, method=Image.BICUBIC, color=(0, 0, 0)))
            arr = np.asarray(out, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DecodeError("not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise DecodeError(f"too large ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, IndexError, TypeError) as e:
        # Pillow reports truncated and corrupt data as OSError/ValueError/SyntaxError, and some broken
        # headers as the others; anything here means the file cannot be decoded.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DecodeError(f"corrupt or truncated ({first[:160]})") from None
    if arr.shape != (res, res, 3):  # pragma: no cover - Pillow's fit/pad always give the size asked
        raise DecodeError(f"decoded to shape {arr.shape}, expected {(res, res, 3)}")
    return arr


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as an ``RGB`` image: transparency composited onto black, 16/32-bit greyscale scaled to
    8 bits, every other mode converted by Pillow."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        # 16-bit data (PNG/TIFF) is scaled down; a 32-bit or float image is taken as 0..255 already
        # unless its values need 16 bits.
        if mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0
        grey = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, img).convert("RGB")
    return img.convert("RGB")
