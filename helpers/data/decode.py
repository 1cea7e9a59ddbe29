"""Decoding and rendering: any raster file or SVG -> an (H, W, 4) uint8 RGBA array, or :class:`BadImage`.

Grayscale, palette and 16-bit images become 8-bit RGBA (16-bit is rescaled, not clipped);
huge, animated, truncated and non-image files are caught here with the reason, so a build can
skip them and name them in one warning.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from struct import error as struct_error  # raised by some truncated TIFF/ICO headers

import numpy as np
from PIL import Image

MAX_SIDE = 10_000           # images larger than this (either side) are refused: decompression-bomb guard


class BadImage(ValueError):
    """This file cannot be used as an image (the message is the reason)."""


def to_rgba(img: Image.Image) -> np.ndarray:
    """Any PIL image as an (H, W, 4) uint8 array: 16-bit and float grayscale are rescaled to
    8 bits (PIL's own convert would clip them), palette transparency is honoured."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0                                    # 0..65535 -> 0..255
        elif mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0                                    # float images in 0..1
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.dstack([g, g, g, np.full_like(g, 255)])
    if mode == "P" and "transparency" in img.info:
        img = img.convert("PA")
    try:
        img = img.convert("RGBA")
    except ValueError:                                       # LAB, HSV, ...: through RGB
        img = img.convert("RGB").convert("RGBA")
    return np.asarray(img, dtype=np.uint8).copy()


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 straight alpha -> (H, W, 3) uint8 on a white background (exact, rounded)."""
    rgb = rgba[..., :3].astype(np.uint32)
    a = rgba[..., 3:4].astype(np.uint32)
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def pad_square(rgb: np.ndarray) -> np.ndarray:
    """Centre a non-square image on a white square (emojis are square; never stretch them)."""
    h, w = rgb.shape[:2]
    if h == w:
        return rgb
    side = max(h, w)
    out = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Square RGB uint8 -> size x size with Lanczos (antialiased when shrinking)."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS))


def open_rgba(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Decode a raster image to (H, W, 4) uint8 straight-alpha RGBA; also say whether it was
    animated (then its first frame is used). Raises :class:`BadImage` with the reason."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if max(w, h) > MAX_SIDE:
                    raise BadImage(f"too large ({w}x{h} px; the limit is {MAX_SIDE} px a side)")
                animated = bool(getattr(img, "is_animated", False)) or getattr(img, "n_frames", 1) > 1
                img.seek(0)
                img.load()
                rgba = to_rgba(img)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct_error) as e:
        raise BadImage(f"corrupt or truncated ({type(e).__name__}: {e})") from None
    if rgba.ndim != 3 or min(rgba.shape[:2]) < 1:
        raise BadImage("no pixels")
    return rgba, animated


def open_image(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """:func:`open_rgba` composited on white: (H, W, 3) uint8, and whether it was animated."""
    rgba, animated = open_rgba(path)
    return composite_on_white(rgba), animated


def render_svg_rgba(path: str | os.PathLike, size: int) -> np.ndarray:
    """Rasterize an SVG at size x size with resvg (a genuine rendering): (size, size, 4) uint8 RGBA."""
    import resvg_py

    try:
        png = resvg_py.svg_to_bytes(svg_path=str(path), width=size, height=size, skip_system_fonts=True)
        with Image.open(io.BytesIO(bytes(png))) as img:
            return to_rgba(img)
    except Exception as e:  # resvg raises ValueError, PIL OSError; both mean "unusable SVG"
        raise BadImage(f"SVG could not be rendered ({type(e).__name__}: {e})") from None


def render_svg(path: str | os.PathLike, size: int) -> np.ndarray:
    """An SVG rendered at size x size and composited on white: (size, size, 3) uint8."""
    return resize(pad_square(composite_on_white(render_svg_rgba(path, size))), size)
