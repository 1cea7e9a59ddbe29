"""Framing: one rule that puts every vendor's drawing in the same place on the canvas.

Vendors frame alike-looking emojis differently: Twemoji fills its canvas edge to edge, Noto
leaves a thin margin, Fluent 3D about an eighth, OpenMoji (with its outlines) about a quarter.
A model that sees all four would spend capacity on the vendor's margin instead of the emoji,
so every image is cropped to a square around its content box whose side makes the box's
longer side ``FRAME_SHARE`` of the canvas, centred, on white. A size is made from the crop
only where the crop has at least that many source pixels (no upsampled 128 px images), except
the sizes every image must have (32 and 64 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .decode import composite_on_white, resize

FRAME_SHARE = 15 / 16     # 30 of 32 px: a 1 px white margin, so a 1 px shift never cuts the drawing
ALPHA_MIN = 16            # alpha above which a pixel is part of the drawing
WHITE_MIN = 250           # an opaque pixel with every channel at or above this is background
SIZES = (32, 64, 128)
ALWAYS = (32, 64)         # sizes every image gets, upsampled from a small source if need be


@dataclass(frozen=True)
class Framed:
    images: dict          # size -> (size, size, 3) uint8 on white, for the sizes the source allows
    share: float          # the content box's longer side over the source's longer side, before framing


def content_box(rgba: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), bottom/right exclusive, of the drawing in an RGBA array:
    the pixels with alpha above ALPHA_MIN, or, in an image without transparency, the pixels that
    are not white. An empty image is all box."""
    alpha = rgba[..., 3]
    if (alpha < 255).any():
        mask = alpha > ALPHA_MIN
    else:
        mask = (rgba[..., :3] < WHITE_MIN).any(-1)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return 0, 0, rgba.shape[0], rgba.shape[1]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def crop_side(rgba: np.ndarray, share: float = FRAME_SHARE) -> int:
    """The side in source pixels of the square crop that :func:`frame` takes."""
    top, left, bottom, right = content_box(rgba)
    return max(1, math.ceil(max(bottom - top, right - left) / share))


def frame(rgba: np.ndarray, sizes: tuple[int, ...] = SIZES, share: float = FRAME_SHARE,
          always: tuple[int, ...] = ALWAYS) -> Framed:
    """Crop ``rgba`` (H, W, 4) to the square around its content box that makes the box's longer
    side ``share`` of the side, centred (transparent where the crop leaves the image), composite
    on white and resize with Lanczos to each of ``sizes`` that the crop has the pixels for, and
    to each of ``always``."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    top, left, bottom, right = content_box(rgba)
    side = crop_side(rgba, share)
    ctop, cleft = (top + bottom - side) // 2, (left + right - side) // 2
    canvas = np.zeros((side, side, 4), np.uint8)
    h, w = rgba.shape[:2]
    st, sl, sb, sr = max(ctop, 0), max(cleft, 0), min(ctop + side, h), min(cleft + side, w)
    canvas[st - ctop:sb - ctop, sl - cleft:sr - cleft] = rgba[st:sb, sl:sr]
    rgb = composite_on_white(canvas)
    images = {s: resize(rgb, s) for s in sizes if s in always or side >= s}
    return Framed(images, max(bottom - top, right - left) / max(h, w))
