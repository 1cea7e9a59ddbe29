"""VQ-VAE: a convolutional autoencoder with a discrete bottleneck.

Paper: van den Oord, Vinyals, Kavukcuoglu 2017, "Neural Discrete Representation Learning".
The quantizer (EMA codebook, k-means init, dead-code restart) lives in quantize.py.

Shape: 32x32 RGB -> stride-2 convolutions + residual blocks -> an 8x8 grid of codes
(``downsample=4``; ``downsample=2`` gives 16x16 codes for the rate/quality table) ->
transposed convolutions + residual blocks -> 32x32 RGB. The output layer is linear (no tanh:
tanh saturates and slows learning of the many pure-white/black pixels of emojis); in eval
mode it is clamped to [-1, 1].

Loss (the report's recipe, with config weights): MSE + commitment + ssim_weight * (1 - SSIM)
+ l1_weight * L1 + perceptual_weight * VGG16 feature distance. VGG16 weights cannot be
downloaded here, so the perceptual term runs only when torchvision's cache already holds
them, and otherwise prints once that it is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tensors import to_model_input
from . import Configurable, register
from .quantize import QuantizerOutput, VectorQuantizer


@dataclass
class VQVAEConfig:
    in_channels: int = 3            # RGB
    hidden: int = 128               # channels at the latent resolution (halved per level above it)
    res_blocks: int = 2             # residual blocks per resolution level, encoder and decoder
    res_hidden: int = 64            # bottleneck channels inside a residual block at the latent level
    downsample: int = 4             # 4: 32x32 -> 8x8 codes;  2: 32x32 -> 16x16 codes
    num_codes: int = 512            # codebook size K
    embed_dim: int = 64             # code vector size D (small D: nearest-code search is better posed)
    beta: float = 0.25              # commitment weight
    decay: float = 0.99             # EMA decay of the codebook
    kmeans_init: bool = True        # codebook from k-means on the first batch
    restart_window: int = 20        # training steps without use before a code is re-seeded (0: never);
                                    # 20 (vs 100) ends the collapse after the k-means init 80 steps sooner
    restart_threshold: float = 0.0  # also re-seed codes whose EMA count falls below this (0: off)
    ssim_weight: float = 0.0        # weight of (1 - SSIM) in the loss: sharper edges than MSE alone
    l1_weight: float = 0.0          # weight of the L1 term: less blur on flat colour regions
    perceptual_weight: float = 0.0  # weight of the VGG16 feature loss (only if weights are cached)


# The report's configuration (codebook 256, hidden 256, embedding 256) and ours.
# "default" is chosen by measurement on 2 CPU cores (docs/EXPERIMENTS.md, "Choosing the VQ-VAE"): 1024 codes of
# dim 32 beat 512 of dim 64 by 0.5 dB at equal time, with every code still in use.
VQVAE_CONFIGS = {
    "report": VQVAEConfig(num_codes=256, hidden=256, embed_dim=256, res_hidden=64,
                          ssim_weight=0.0, l1_weight=0.0),
    "default": VQVAEConfig(num_codes=1024, hidden=128, embed_dim=32, res_hidden=64,
                           ssim_weight=0.2, l1_weight=0.0),
    "latent16": VQVAEConfig(num_codes=1024, hidden=128, embed_dim=32, res_hidden=64, downsample=2,
                            ssim_weight=0.2, l1_weight=0.0),
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

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = VectorQuantizer(
            config.num_codes, config.embed_dim, beta=config.beta, decay=config.decay,
            kmeans_init=config.kmeans_init, restart_window=config.restart_window,
            restart_threshold=config.restart_threshold)
        self.decoder = Decoder(config)

    @classmethod
    def named(cls, name: str, **overrides) -> "VQVAE":
        """A model from VQVAE_CONFIGS by name, with optional field overrides."""
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
        x = self._prepare(batch[0])
        recon, vq = self(x)
        cfg = self.config
        loss, logs = reconstruction_loss(recon, x, ssim_weight=cfg.ssim_weight, l1_weight=cfg.l1_weight,
                                         perceptual_weight=cfg.perceptual_weight)
        loss = loss + vq.loss
        logs.update(commit=vq.loss.item(), perplexity=vq.perplexity.item(), used=float(vq.used), loss=loss.item())
        return loss, logs


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, *, ssim_weight: float = 0.0, l1_weight: float = 0.0,
                        perceptual_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """MSE + ssim_weight * (1 - SSIM) + l1_weight * L1 + perceptual_weight * VGG16 distance of
    images in [-1, 1], in fp32 — the one reconstruction loss of every decoder in the project.
    Logs mse, psnr (dB, as for images in [0, 1]) and each term that is on."""
    recon, x = recon.float(), x.float()
    mse = F.mse_loss(recon, x)
    loss = mse
    logs = {"mse": mse.item(), "psnr": 10 * math.log10(4.0 / max(mse.item(), 1e-12))}  # range 2 in [-1,1]
    if ssim_weight > 0:
        s = ssim((recon + 1) / 2, (x + 1) / 2)
        loss = loss + ssim_weight * (1 - s)
        logs["ssim"] = s.item()
    if l1_weight > 0:
        l1 = F.l1_loss(recon, x)
        loss = loss + l1_weight * l1
        logs["l1"] = l1.item()
    if perceptual_weight > 0:
        vgg = _perceptual_net()
        if vgg is not None:
            p = vgg(recon, x)
            loss = loss + perceptual_weight * p
            logs["perceptual"] = p.item()
    return loss, logs


# ---- SSIM loss (differentiable, fp32) ---------------------------------------------------------

def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _blur_matrix(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n, n) matrix M with v @ M = (v reflection-padded by k//2) convolved with g, 'valid':
    one axis of the SSIM blur as a matrix product (padding folded in)."""
    k, pad = g.numel(), g.numel() // 2
    band = torch.zeros(n + 2 * pad, n, dtype=g.dtype, device=g.device)   # padded index -> output
    for t in range(k):
        band[t:t + n].diagonal().copy_(g[t].expand(n))
    src = torch.arange(-pad, n + pad, device=g.device).abs()             # reflect (no edge repeat)
    src = torch.where(src > n - 1, 2 * (n - 1) - src, src)
    return torch.zeros(n, n, dtype=g.dtype, device=g.device).index_add_(0, src, band)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of images in [0, data_range], 11x11 Gaussian window over the
    reflection-padded image, as torchmetrics computes it (so the loss and the metric agree).
    The separable blur is two (n, n) matrix products: ~9x faster on CPU than depthwise convs
    (measured: 22 ms vs 190 ms forward+backward, batch 64 at 32x32, one thread).
    Runs in fp32 even under autocast: E[x^2]-E[x]^2 cancels badly in bf16."""
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        g = _gaussian_window(window, sigma, x.device)
        mh, mw = _blur_matrix(x.shape[-2], g), _blur_matrix(x.shape[-1], g)
        stats = torch.stack([x, y, x * x, y * y, x * y])             # (5, B, C, H, W)
        mx, my, xx, yy, xy = (mh.t() @ (stats @ mw)).unbind(0)        # blur columns, then rows
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        vx, vy, cxy = (xx - mx * mx).clamp_min(0), (yy - my * my).clamp_min(0), xy - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        return s.mean()


# ---- perceptual loss: only with VGG16 weights already on disk --------------------------------

_VGG_FILE = "vgg16-397923af.pth"   # torchvision's VGG16_Weights.IMAGENET1K_V1 file name
_vgg_cache: list = []   # [net or None] once looked up; module-level so it stays out of state dicts


def _perceptual_net():
    if not _vgg_cache:
        _vgg_cache.append(VGGPerceptual.from_cache())
    return _vgg_cache[0]


class VGGPerceptual(nn.Module):
    """Distance between VGG16 features (relu1_2, relu2_2, relu3_3) of two images in [-1, 1]."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.slices = nn.ModuleList([features[:4], features[4:9], features[9:16]])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    @classmethod
    def from_cache(cls):
        """The network if its weights are in torch.hub's cache, else None (printed once). Never downloads."""
        path = Path(torch.hub.get_dir()) / "checkpoints" / _VGG_FILE
        if not path.exists():
            print(f"perceptual loss skipped: VGG16 weights not found at {path} "
                  "(they are never downloaded here)")
            return None
        from torchvision.models import vgg16

        net = vgg16(weights=None)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(net.features[:16])

    def forward(self, x, y):
        self.to(x.device)
        x = ((x + 1) / 2 - self.mean) / self.std
        y = ((y + 1) / 2 - self.mean) / self.std
        loss = x.new_zeros(())
        for s in self.slices:
            x, y = s(x), s(y)
            loss = loss + F.mse_loss(x.float(), y.float())
        return loss


__all__ = ["VQVAE", "VQVAEConfig", "VQVAE_CONFIGS", "reconstruction_loss", "ssim", "VGGPerceptual"]
