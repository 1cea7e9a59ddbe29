"""VQ-VAE-2: a two-level hierarchy of discrete latents.

Paper: Razavi, van den Oord, Vinyals 2019, "Generating Diverse High-Fidelity Images with
VQ-VAE-2". The quantizer of both levels (EMA codebook, k-means init, dead-code restart) is the
one of the VQ-VAE (quantize.py); the residual block comes from vqvae.py, the loss from losses.py.

Shapes at 64x64 (the names say which grid a tensor lives on):

    x (3, 64) -> bottom encoder (/4) -> h_b (hidden, 16) -> top encoder (/2) -> z_t (D, 8)
    z_t -> top quantizer -> q_t (D, 8)  =>  codes_top (8, 8)
    q_t -> top decoder (x2) -> d_t (D, 16)
    conv1x1([h_b, d_t]) -> z_b (D, 16) -> bottom quantizer -> q_b  =>  codes_bottom (16, 16)
    [upsample(q_t), q_b] (2D, 16) -> decoder (x4) -> recon (3, 64)

The top codes hold the global layout (8x8 cells of 8x8 pixels), the bottom codes the detail
that the top did not explain: the bottom quantizer sees the decoded top, so it can spend its
codes on the residual. The final decoder sees both levels, so a bottom code never has to repeat
what its top code already says.

The output layer is linear (tanh saturates on the many pure-white pixels of emojis); in eval mode
the reconstruction is clamped to [-1, 1]. Everything is plain convolutions so that bf16 autocast
and channels_last (what the Trainer turns on for CPU) speed all of it up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tensors import random_flip_shift, to_model_input
from . import Configurable, register
from .quantize import QuantizerOutput, VectorQuantizer
from .losses import reconstruction_loss
from .vqvae import ResBlock


@dataclass
class VQVAE2Config:
    in_channels: int = 3            # RGB
    hidden: int = 128               # channels of both encoders at the latent grids (16x16 and 8x8)
    res_blocks: int = 2             # residual blocks per stack (encoders, top decoder, final decoder)
    res_hidden: int = 64            # bottleneck channels inside a residual block
    decoder_hidden: int = 128       # channels of the final decoder at 16x16 (halved at 32x32)
    num_codes_top: int = 256        # codebook size of the top level (8x8 codes); see VQVAE2_CONFIGS
    num_codes_bottom: int = 512     # codebook size of the bottom level (16x16 codes)
    embed_dim: int = 64             # code vector size D, both levels (small D: nearest code better posed)
    beta: float = 0.25              # commitment weight (both levels)
    decay: float = 0.99             # EMA decay of the codebooks
    kmeans_init: bool = True        # codebooks from k-means on the first batch
    restart_window: int = 20        # training steps without use before a code is re-seeded (0: never);
                                    # at 100 the top level could collapse in short runs (quick's)
    ssim_weight: float = 0.2        # weight of (1 - SSIM): sharper edges than MSE alone
    train_flip: bool = False        # training images mirrored with probability 1/2 ...
    train_shift: int = 0            # ... and moved up to this many pixels on white (tensors.random_flip_shift);
                                    # off, as the VQ-VAE's (vqvae.py)


# The report's setting (EMBED_DIM 256, NUM_EMBEDDINGS 512 at both levels; channels as rosinality's
# vq-vae-2-pytorch, which it followed: 128 hidden, 32 residual channels; MSE + commitment only)
# and ours: a smaller code dimension, an SSIM term, and 256 top codes. The bottom level carries the
# detail, so the top needs fewer, better-used codes, and its prior a smaller vocabulary: with 512
# many top codes went unused at the same PSNR (docs/EXPERIMENTS.md, "256 top codes for the VQ-VAE-2").
VQVAE2_CONFIGS = {
    "report": VQVAE2Config(res_hidden=32, embed_dim=256, num_codes_top=512, num_codes_bottom=512, ssim_weight=0.0),
    "default": VQVAE2Config(),
}


# ---- building blocks -------------------------------------------------------------------------

def _stack(channels: int, res_hidden: int, n: int) -> list[nn.Module]:
    return [ResBlock(channels, res_hidden) for _ in range(n)]


class BottomEncoder(nn.Module):
    """(3, 64) -> (hidden, 16): two 4x4 stride-2 convolutions, then residual blocks."""

    def __init__(self, cfg: VQVAE2Config):
        super().__init__()
        h = cfg.hidden
        self.net = nn.Sequential(
            nn.Conv2d(cfg.in_channels, h // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(h // 2, h, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1),
            *_stack(h, cfg.res_hidden, cfg.res_blocks), nn.ReLU(),
        )

    def forward(self, x):
        return self.net(x)


class TopEncoder(nn.Module):
    """(hidden, 16) -> (D, 8): one more halving, residual blocks, 1x1 to the code dimension."""

    def __init__(self, cfg: VQVAE2Config):
        super().__init__()
        h = cfg.hidden
        self.net = nn.Sequential(
            nn.Conv2d(h, h, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1),
            *_stack(h, cfg.res_hidden, cfg.res_blocks), nn.ReLU(),
            nn.Conv2d(h, cfg.embed_dim, 1),
        )

    def forward(self, x):
        return self.net(x)


class TopDecoder(nn.Module):
    """(D, 8) -> (D, 16): what the top codes say about the 16x16 grid, for the bottom quantizer."""

    def __init__(self, cfg: VQVAE2Config):
        super().__init__()
        h, d = cfg.hidden, cfg.embed_dim
        self.net = nn.Sequential(
            nn.Conv2d(d, h, 3, padding=1),
            *_stack(h, cfg.res_hidden, cfg.res_blocks), nn.ReLU(),
            nn.ConvTranspose2d(h, d, 4, stride=2, padding=1),
        )

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """(2D, 16) -> (3, 64): residual blocks at 16x16, two 4x4 stride-2 transposed convolutions."""

    def __init__(self, cfg: VQVAE2Config):
        super().__init__()
        h = cfg.decoder_hidden
        self.net = nn.Sequential(
            nn.Conv2d(2 * cfg.embed_dim, h, 3, padding=1),
            *_stack(h, cfg.res_hidden, cfg.res_blocks), nn.ReLU(),
            nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(h // 2, cfg.in_channels, 4, stride=2, padding=1),
        )

    def forward(self, x):
        return self.net(x)


# ---- the model -------------------------------------------------------------------------------

@register
class VQVAE2(Configurable, nn.Module):
    config_class = VQVAE2Config
    renamed_fields = {"augment_flip": "train_flip", "augment_shift": "train_shift"}
    retired_fields = {"restart_threshold": 0.0, "l1_weight": 0.0}

    def __init__(self, config: VQVAE2Config):
        super().__init__()
        self.config = cfg = config
        d = cfg.embed_dim

        def quantizer(num_codes: int) -> VectorQuantizer:
            return VectorQuantizer(num_codes, d, beta=cfg.beta, decay=cfg.decay, kmeans_init=cfg.kmeans_init,
                                   restart_window=cfg.restart_window)

        self.enc_b = BottomEncoder(cfg)
        self.enc_t = TopEncoder(cfg)
        self.quantizer_t = quantizer(cfg.num_codes_top)
        self.dec_t = TopDecoder(cfg)
        # The bottom quantizer sees its own features and the decoded top: it codes what is left.
        self.pre_quant_b = nn.Conv2d(cfg.hidden + d, d, 1)
        self.quantizer_b = quantizer(cfg.num_codes_bottom)
        # Top code vectors brought to the bottom grid for the final decoder (learned, not nearest).
        self.upsample_t = nn.ConvTranspose2d(d, d, 4, stride=2, padding=1)
        self.dec = Decoder(cfg)

    @classmethod
    def named(cls, name: str, **overrides) -> "VQVAE2":
        """A model from VQVAE2_CONFIGS by name, with optional field overrides."""
        if name not in VQVAE2_CONFIGS:
            raise ValueError(f"no VQ-VAE-2 config {name!r}; the named ones: {list(VQVAE2_CONFIGS)}")
        return cls(replace(VQVAE2_CONFIGS[name], **overrides))

    @staticmethod
    def latent_sizes(image_size: int = 64) -> tuple[int, int]:
        """Side of the (top, bottom) code grids for an image side."""
        return image_size // 8, image_size // 4

    # ---- the autoencoder ----------------------------------------------------------------------

    def _channels_last(self) -> bool:
        return self.enc_b.net[0].weight.is_contiguous(memory_format=torch.channels_last)

    def _layout(self, t: torch.Tensor) -> torch.Tensor:
        """Follow the model's memory format (the Trainer makes it channels_last on CPU)."""
        return t.contiguous(memory_format=torch.channels_last) if self._channels_last() else t

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self._layout(to_model_input(x))   # stored uint8 images -> [-1, 1]

    def _bottom_input(self, h_b: torch.Tensor, q_t: torch.Tensor) -> torch.Tensor:
        d_t = self.dec_t(q_t)
        return self.pre_quant_b(torch.cat([h_b, d_t.to(h_b.dtype)], 1))

    def decode_quantized(self, q_t: torch.Tensor, q_b: torch.Tensor) -> torch.Tensor:
        """Code vectors of both levels -> images (unclamped)."""
        up = self.upsample_t(q_t)
        return self.dec(torch.cat([up, q_b.to(up.dtype)], 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput, QuantizerOutput]:
        """Images in [-1, 1] (or uint8) -> (reconstruction, top quantizer output, bottom quantizer output)."""
        h_b = self.enc_b(self._prepare(x))
        vq_t = self.quantizer_t(self.enc_t(h_b))
        vq_b = self.quantizer_b(self._bottom_input(h_b, vq_t.quantized))
        recon = self.decode_quantized(vq_t.quantized, vq_b.quantized)
        if not self.training:
            recon = recon.clamp(-1, 1)
        return recon, vq_t, vq_b

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] (or uint8) -> (codes_top (B, h/8, w/8), codes_bottom (B, h/4, w/4)), long.
        Never updates the codebooks. The bottom codes are chosen given the *quantized* top, exactly
        as in training, so decode_codes(*encode(x)) is the model's reconstruction."""
        h_b = self.enc_b(self._prepare(x))
        codes_t = self.quantizer_t.quantize(self.enc_t(h_b))
        q_t = self._layout(self.quantizer_t.embed(codes_t)).to(h_b.dtype)
        codes_b = self.quantizer_b.quantize(self._bottom_input(h_b, q_t))
        return codes_t, codes_b

    def decode_codes(self, codes_top: torch.Tensor, codes_bottom: torch.Tensor) -> torch.Tensor:
        """Codes of both levels -> images in [-1, 1]."""
        dtype = self.dec.net[0].weight.dtype
        q_t = self._layout(self.quantizer_t.embed(codes_top)).to(dtype)
        q_b = self._layout(self.quantizer_b.embed(codes_bottom)).to(dtype)
        return self.decode_quantized(q_t, q_b).clamp(-1, 1)

    @torch.no_grad()
    def top_condition(self, codes_top: torch.Tensor) -> torch.Tensor:
        """Top codes (B, h, w) -> their code vectors on the bottom grid (B, D, 2h, 2w), nearest
        upsampling, fp32: a spatial condition for a bottom prior that has no conditioning network
        of its own (the gated PixelCNN's ``cond``; ``cond_channels = embed_dim``)."""
        q = self.quantizer_t.embed(codes_top.long()).float()
        return F.interpolate(q, scale_factor=2, mode="nearest")

    # ---- training -----------------------------------------------------------------------------

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (images_uint8,) -> loss = MSE + commitment (both levels) + ssim_weight * (1 - SSIM);
        logs mse, psnr, ssim, commit, perplexity and used codes per level. In
        training, images are first mirrored and moved as the config says."""
        cfg = self.config
        images = random_flip_shift(batch[0], cfg.train_flip, cfg.train_shift) if self.training else batch[0]
        x = self._prepare(images)
        recon, vq_t, vq_b = self(x)
        loss, logs = reconstruction_loss(recon, x, ssim_weight=cfg.ssim_weight)
        commit = vq_t.loss + vq_b.loss
        loss = loss + commit
        # detached tensors, read every few steps by the Trainer: no wait for the device per step
        logs.update(commit=commit.detach(), perplexity_top=vq_t.perplexity.detach(),
                    perplexity_bottom=vq_b.perplexity.detach(), used_top=vq_t.used, used_bottom=vq_b.used,
                    loss=loss.detach())
        return loss, logs


__all__ = ["VQVAE2", "VQVAE2Config", "VQVAE2_CONFIGS"]
