"""Super-resolution decoder: the VQ-VAE-2 codes of a 64x64 image (and the image) -> a 128x128 image.

The codes of a frozen VQ-VAE-2 (8x8 top, 16x16 bottom) are a compact description of a 64x64
emoji; a second decoder trained on (codes, 128x128 rendering) pairs learns to draw the same
description at twice the resolution — the same idea as the decoder of the VQ-VAE-2 itself, with
one more upsampling stage. Any code grid decodes, so samples of the priors can be drawn at 128
px too. Baselines are bicubic / Lanczos upscaling of the 64x64 image (05_extensions).

With ``skip`` (the default) the decoder also reads the 64x64 image itself (folded into its
16x16 grid by a pixel unshuffle) and draws only the difference to the bicubic upscale of it, the
usual residual form of super-resolution: codes alone cannot beat bicubic, because the VQ-VAE-2
reconstruction they describe is itself further from the image than bicubic is
(docs/EXPERIMENTS.md, "Learning rates"). Samples of the priors
have no real 64x64 image; their VQ-VAE-2 decoding stands in for it.

Embeddings are copies of the VQ-VAE-2 codebooks (:meth:`SuperRes.from_vqvae2`) and stay frozen
with them (``freeze_codebooks``): only the decoder learns, so the codes mean what they mean to
the VQ-VAE-2 and its priors' samples can be drawn at 128 px; upsampling is a 3x3 convolution to 4x the channels followed by a pixel
shuffle (sub-pixel convolution, Shi et al. 2016), which on CPU runs faster than transposed
convolutions of the same reach. Loss as the VQ-VAE-2's: MSE + ssim_weight * (1 - SSIM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tensors import to_model_input
from . import Configurable, register
from .losses import reconstruction_loss
from .vqvae import ResBlock


@dataclass
class SuperResConfig:
    num_codes_top: int = 512        # codebook sizes of the frozen VQ-VAE-2
    num_codes_bottom: int = 512
    embed_dim: int = 64             # code vector size (the VQ-VAE-2's, so its codebooks can seed ours)
    hidden: int = 128               # channels at the bottom-code grid (16x16); halved per doubling, >= 16
    res_blocks: int = 2             # residual blocks at 16x16 (one per finer level)
    res_hidden: int = 64            # bottleneck channels of the 16x16 residual blocks
    upsample: int = 8               # bottom grid -> image side: 16 * 8 = 128
    in_channels: int = 3            # RGB out
    ssim_weight: float = 0.2        # weight of (1 - SSIM)
    freeze_codebooks: bool = True   # the code embeddings are the VQ-VAE-2's and are not trained
    skip: bool = True               # read the low-res image too and add to its bicubic upscale


class _Up(nn.Module):
    """x2: ReLU, 3x3 conv to 4 * c_out, pixel shuffle, then one residual block at the new size."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2),
                                 ResBlock(c_out, max(c_out // 2, 8)))

    def forward(self, x):
        return self.net(x)


@register
class SuperRes(Configurable, nn.Module):
    config_class = SuperResConfig
    retired_fields = {"l1_weight": 0.0}

    def __init__(self, config: SuperResConfig):
        super().__init__()
        self.config = cfg = config
        d, h = cfg.embed_dim, cfg.hidden
        n_up = int(round(math.log2(cfg.upsample)))
        assert 2 ** n_up == cfg.upsample and n_up >= 1, "upsample must be 2, 4, 8, ..."
        self.embed_t = nn.Embedding(cfg.num_codes_top, d)
        self.embed_b = nn.Embedding(cfg.num_codes_bottom, d)
        if cfg.freeze_codebooks:
            self.embed_t.weight.requires_grad_(False)
            self.embed_b.weight.requires_grad_(False)
        self.up_t = nn.ConvTranspose2d(d, d, 4, stride=2, padding=1)   # top grid -> bottom grid
        low_channels = cfg.in_channels * (cfg.upsample // 2) ** 2 if cfg.skip else 0  # unshuffled image
        layers: list[nn.Module] = [nn.Conv2d(2 * d + low_channels, h, 3, padding=1)]
        layers += [ResBlock(h, cfg.res_hidden) for _ in range(cfg.res_blocks)]
        c = h
        for _ in range(n_up):
            layers.append(_Up(c, max(c // 2, 16)))
            c = max(c // 2, 16)
        layers += [nn.ReLU(), nn.Conv2d(c, cfg.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    @classmethod
    def from_vqvae2(cls, vqvae2, **overrides) -> "SuperRes":
        """A decoder for the codes of ``vqvae2``, its embeddings copied from that model's codebooks."""
        vc = vqvae2.config
        sizes = {"num_codes_top": vc.num_codes_top, "num_codes_bottom": vc.num_codes_bottom,
                 "embed_dim": vc.embed_dim}
        model = cls(SuperResConfig(**{**sizes, **overrides}))
        with torch.no_grad():
            model.embed_t.weight.copy_(vqvae2.quantizer_t.codebook)
            model.embed_b.weight.copy_(vqvae2.quantizer_b.codebook)
        return model

    def _layout(self, t: torch.Tensor) -> torch.Tensor:
        if self.net[0].weight.is_contiguous(memory_format=torch.channels_last):
            return t.contiguous(memory_format=torch.channels_last)
        return t

    def forward(self, codes_top: torch.Tensor, codes_bottom: torch.Tensor,
                low: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, 8, 8) and (B, 16, 16), and with ``skip`` the 64x64 image ``low`` (uint8 or
        [-1, 1]) -> images (B, 3, 128, 128), linear output (clamped in eval)."""
        q_t = self._layout(self.embed_t(codes_top.long()).permute(0, 3, 1, 2))
        q_b = self._layout(self.embed_b(codes_bottom.long()).permute(0, 3, 1, 2))
        up = self.up_t(q_t)
        parts = [up, q_b.to(up.dtype)]
        if self.config.skip:
            if low is None:
                raise ValueError("this decoder adds to the upscaled low-res image (skip=True): pass low=")
            factor = self.config.upsample // 2                  # low-res image side / bottom grid side
            want = tuple(n * factor for n in codes_bottom.shape[-2:])
            if tuple(low.shape[-2:]) != want:
                raise ValueError(f"low= must be {want[0]}x{want[1]} images for {tuple(codes_bottom.shape[-2:])} "
                                 f"bottom codes (upsample {self.config.upsample}), got {tuple(low.shape[-2:])}")
            low = to_model_input(low)
            parts.append(self._layout(F.pixel_unshuffle(low, factor)).to(up.dtype))
        x = self.net(torch.cat(parts, 1))
        if self.config.skip:
            x = x + F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False)
        return x if self.training else x.clamp(-1, 1)

    @torch.no_grad()
    def upscale(self, vqvae2, images64: torch.Tensor) -> torch.Tensor:
        """uint8 or [-1, 1] 64x64 images -> [-1, 1] 128x128 images through the codes of ``vqvae2``."""
        return self(*vqvae2.encode(images64), low=images64)

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (codes_top, codes_bottom, [images at the input size if skip,] images at the
        output size; uint8 or [-1, 1]) -> loss and logs."""
        *codes, images = batch
        target = to_model_input(images)
        out = self(*codes)
        loss, logs = reconstruction_loss(out, target, ssim_weight=self.config.ssim_weight)
        logs["loss"] = loss.detach()
        return loss, logs


__all__ = ["SuperRes", "SuperResConfig"]
