"""VQ-VAE: a convolutional autoencoder with a discrete bottleneck.

Paper: van den Oord, Vinyals, Kavukcuoglu 2017, "Neural Discrete Representation Learning".
The quantizer (EMA codebook, k-means init, dead-code restart) lives in quantize.py.

Shape: 32x32 RGB -> stride-2 convolutions + residual blocks -> an 8x8 grid of codes
(``downsample=4``; ``downsample=2`` gives 16x16 codes for the rate/quality table) ->
transposed convolutions + residual blocks -> 32x32 RGB. The output layer is linear (no tanh:
tanh saturates and slows learning of the many pure-white/black pixels of emojis); in eval
mode it is clamped to [-1, 1].

Loss (the report's recipe, with a config weight): MSE + commitment + ssim_weight * (1 - SSIM); the
reconstruction terms live in losses.py, shared with VQ-VAE-2 and the super-resolution decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from ..tensors import random_flip_shift, to_model_input
from . import Configurable, register
from .losses import reconstruction_loss
from .quantize import QuantizerOutput, VectorQuantizer


@dataclass
class VQVAEConfig:
    in_channels: int = 3            # RGB
    hidden: int = 128               # channels at the latent resolution (halved per level above it)
    res_blocks: int = 2             # residual blocks per resolution level, encoder and decoder
    res_hidden: int = 64            # bottleneck channels inside a residual block at the latent level
    downsample: int = 4             # 4: 32x32 -> 8x8 codes;  2: 32x32 -> 16x16 codes
    num_codes: int = 1024           # codebook size K ...
    embed_dim: int = 32             # ... of code vectors of size D: many small codes beat fewer large ones
                                    # in equal time, every code still in use (docs/EXPERIMENTS.md,
                                    # "Choosing the VQ-VAE"); a small D keeps the nearest-code search well posed
    beta: float = 0.25              # commitment weight
    decay: float = 0.99             # EMA decay of the codebook
    kmeans_init: bool = True        # codebook from k-means on the first batch
    restart_window: int = 20        # training steps without use before a code is re-seeded (0: never);
                                    # short: it ends the collapse after the k-means init sooner
    ssim_weight: float = 0.2        # weight of (1 - SSIM) in the loss: sharper edges than MSE alone,
                                    # and higher val PSNR than L1 in its place (docs/EXPERIMENTS.md,
                                    # "Choosing the VQ-VAE")
    train_flip: bool = False        # training images mirrored with probability 1/2 ...
    train_shift: int = 0            # ... and moved up to this many pixels on white (tensors.random_flip_shift);
                                    # off: it closed the train-val gap without raising val at 6000 steps
                                    # (docs/EXPERIMENTS.md, "Augmenting the VQ-VAE's training images")


# "default" is VQVAEConfig(); "report" is the original report's (codebook 256, hidden 256,
# embedding 256, MSE + commitment only); "latent16" the 16x16-code side model of 01's rate /
# quality table.
VQVAE_CONFIGS = {
    "default": VQVAEConfig(),
    "report": VQVAEConfig(num_codes=256, hidden=256, embed_dim=256, ssim_weight=0.0),
    "latent16": VQVAEConfig(downsample=2),
}


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))) — the VQ-VAE paper's residual block."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x):
        return x + self.block(x)


def _level_channels(cfg: VQVAEConfig) -> list[int]:
    """Channels per resolution level, from the image side down to the latent grid."""
    n_down = int(round(math.log2(cfg.downsample)))
    assert 2 ** n_down == cfg.downsample and n_down >= 1, "downsample must be 2, 4, 8, ..."
    return [max(cfg.hidden >> (n_down - 1 - i), 16) for i in range(n_down)]


class Encoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        chans = _level_channels(cfg)
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for i, c in enumerate(chans):
            # 4x4 stride-2 convolution: halves the resolution without checkerboard gaps.
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.ReLU()]
            if i < len(chans) - 1:   # residual blocks at the intermediate levels too
                res_h = max(cfg.res_hidden * c // cfg.hidden, 16)
                layers += [ResBlock(c, res_h) for _ in range(cfg.res_blocks)]
            c_in = c
        layers += [nn.Conv2d(c_in, cfg.hidden, 3, padding=1)]
        layers += [ResBlock(cfg.hidden, cfg.res_hidden) for _ in range(cfg.res_blocks)]
        layers += [nn.ReLU(), nn.Conv2d(cfg.hidden, cfg.embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        chans = _level_channels(cfg)[::-1]   # latent level first
        layers: list[nn.Module] = [nn.Conv2d(cfg.embed_dim, cfg.hidden, 3, padding=1)]
        layers += [ResBlock(cfg.hidden, cfg.res_hidden) for _ in range(cfg.res_blocks)]
        for i, c in enumerate(chans):
            last = i == len(chans) - 1
            c_out = cfg.in_channels if last else chans[i + 1]
            if i > 0:
                res_h = max(cfg.res_hidden * c // cfg.hidden, 16)
                layers += [ResBlock(c, res_h) for _ in range(cfg.res_blocks)]
            layers += [nn.ReLU(), nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


@register
class VQVAE(Configurable, nn.Module):
    config_class = VQVAEConfig
    renamed_fields = {"augment_flip": "train_flip", "augment_shift": "train_shift"}
    retired_fields = {"restart_threshold": 0.0, "perceptual_weight": 0.0, "l2_codes": False, "l1_weight": 0.0}

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = VectorQuantizer(
            config.num_codes, config.embed_dim, beta=config.beta, decay=config.decay,
            kmeans_init=config.kmeans_init, restart_window=config.restart_window)
        self.decoder = Decoder(config)

    @classmethod
    def named(cls, name: str, **overrides) -> "VQVAE":
        """A model from VQVAE_CONFIGS by name, with optional field overrides."""
        if name not in VQVAE_CONFIGS:
            raise ValueError(f"no VQ-VAE config {name!r}; the named ones: {list(VQVAE_CONFIGS)}")
        return cls(replace(VQVAE_CONFIGS[name], **overrides))

    def latent_size(self, image_size: int = 32) -> int:
        return image_size // self.config.downsample

    # ---- the autoencoder ----------------------------------------------------------------------

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = to_model_input(x)        # stored uint8 images -> [-1, 1]
        if self.encoder.net[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Images in [-1, 1] (or uint8) -> (reconstruction, quantizer output)."""
        z = self.encoder(self._prepare(x))
        vq = self.quantizer(z)
        recon = self.decoder(vq.quantized)
        if not self.training:
            recon = recon.clamp(-1, 1)
        return recon, vq

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (or uint8) -> codes (B, h, w) long; never updates the codebook."""
        return self.quantizer.quantize(self.encoder(self._prepare(x)))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> images in [-1, 1]."""
        q = self.quantizer.embed(codes)
        w = self.decoder.net[0].weight
        if w.is_contiguous(memory_format=torch.channels_last):
            q = q.contiguous(memory_format=torch.channels_last)
        return self.decoder(q.to(w.dtype)).clamp(-1, 1)

    # ---- training -----------------------------------------------------------------------------

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        images = random_flip_shift(batch[0], cfg.train_flip, cfg.train_shift) if self.training else batch[0]
        x = self._prepare(images)
        recon, vq = self(x)
        loss, logs = reconstruction_loss(recon, x, ssim_weight=cfg.ssim_weight)
        loss = loss + vq.loss
        # detached tensors, read every few steps by the Trainer: no wait for the device per step
        logs.update(commit=vq.loss.detach(), perplexity=vq.perplexity.detach(), used=vq.used, loss=loss.detach())
        return loss, logs


__all__ = ["VQVAE", "VQVAEConfig", "VQVAE_CONFIGS"]
