"""Tensor conversions and image copies that data, models, sampling and plots all use.

Images are stored as uint8 in [0, 255]; every model consumes float in [-1, 1]; metrics and
plots take float in [0, 1]. Kept apart from ``helpers.data`` so that a model never imports
the dataset code.
"""

from __future__ import annotations

import torch


def shift_on_white(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """uint8 images (N, 3, H, W) moved down by ``dy`` and right by ``dx`` pixels (negative: up,
    left); what leaves the frame is dropped and the uncovered border is white, like the
    background every emoji here is composited on."""
    n, c, h, w = images.shape
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"a shift of {(dy, dx)} pixels leaves nothing of {h}x{w} images")
    out = torch.full_like(images, 255)
    out[:, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, :, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def mirrored_shifted_copies(images: torch.Tensor, flip: bool, shift: int) -> list[torch.Tensor]:
    """The copies of uint8 ``images`` a prior also trains on (as their codes): the mirrored
    images if ``flip``, then the images moved ``shift`` pixels down, up, right and left on white
    (none if ``shift`` is 0). A mirrored or slightly moved emoji is still an emoji."""
    moves = [(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if shift else []
    return ([images.flip(-1)] if flip else []) + [shift_on_white(images, *m) for m in moves]


def random_flip_shift(images: torch.Tensor, flip: bool, shift: int) -> torch.Tensor:
    """Each uint8 image of a batch mirrored with probability 1/2 (if ``flip``) and moved by a
    random offset of up to ``shift`` pixels in each direction on white: what an autoencoder can
    train on so that it does not learn its train drawings' exact positions. Draws from torch's
    global generator, so a seeded run stays reproducible."""
    if not flip and not shift:
        return images
    n, _, h, w = images.shape
    out = images
    if flip:
        mirror = torch.rand(n, device=images.device) < 0.5
        out = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    if shift:
        padded = torch.nn.functional.pad(out, (shift,) * 4, value=255)
        dy, dx = torch.randint(0, 2 * shift + 1, (2, n)).tolist()
        out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    return out


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (what every model consumes); float images are taken to be
    in [-1, 1] already and come back as fp32."""
    if images.dtype != torch.uint8:
        return images.float()
    return images.float().div(127.5).sub(1.0)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> [0, 1], clamped (what metrics and plots consume)."""
    return x.float().add(1.0).div(2.0).clamp(0.0, 1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded (to store or show model outputs)."""
    return to_unit(x).mul(255.0).round().to(torch.uint8)

