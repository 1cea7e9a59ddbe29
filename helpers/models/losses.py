"""The autoencoder losses: the reconstruction loss shared by every decoder (VQ-VAE, VQ-VAE-2,
super-resolution) and its differentiable SSIM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..runtime import OnHost, full_fp32


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, *, ssim_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """MSE + ssim_weight * (1 - SSIM) of images in [-1, 1], in fp32 — the one reconstruction loss
    of every decoder in the project.
    Logs mse, psnr (dB, as for images in [0, 1]) and each term that is on, as detached tensors
    (the psnr worked out when the logs are read): reading them here would make every training
    step wait for the device (:func:`helpers.runtime.host_floats`)."""
    recon, x = recon.float(), x.float()
    mse = F.mse_loss(recon, x)
    loss = mse
    logs = {"mse": mse.detach(), "psnr": OnHost(mse.detach(), _psnr)}
    if ssim_weight > 0:
        s = ssim((recon + 1) / 2, (x + 1) / 2)
        loss = loss + ssim_weight * (1 - s)
        logs["ssim"] = s.detach()
    return loss, logs


def _psnr(mse: float) -> float:
    return 10 * math.log10(4.0 / max(mse, 1e-12))   # range 2 in [-1, 1]


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
    The separable blur is two (n, n) matrix products: several times faster on CPU than depthwise
    convs (docs/PERFORMANCE.md, "Measurements behind the code").
    Runs in fp32 even under autocast and inside a training step that allows TF32 on CUDA:
    E[x^2]-E[x]^2 cancels badly in bf16, and TF32 keeps as few mantissa bits as fp16."""
    with torch.autocast(x.device.type, enabled=False), full_fp32(x.device):
        x, y = x.float(), y.float()
        g = _gaussian_window(window, sigma, x.device)
        mh, mw = _blur_matrix(x.shape[-2], g), _blur_matrix(x.shape[-1], g)
        stats = torch.stack([x, y, x * x, y * y, x * y])             # (5, B, C, H, W)
        mx, my, xx, yy, xy = (mh.t() @ (stats @ mw)).unbind(0)        # blur columns, then rows
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        vx, vy, cxy = (xx - mx * mx).clamp_min(0), (yy - my * my).clamp_min(0), xy - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        return s.mean()


__all__ = ["reconstruction_loss", "ssim"]
