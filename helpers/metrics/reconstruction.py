"""Reconstruction metrics (images as floats in [0, 1], per image then averaged).

MSE; PSNR in dB with data range 1; SSIM with an 11x11 Gaussian window
(sigma 1.5, Wang et al. 2004) from torchmetrics, not a hand-written copy.
PSNR of one image is capped at ``PSNR_CAP_DB`` = 100 dB (MSE floored at
1e-10) so that a single exact reconstruction (a blank emoji, say) cannot
turn the mean into ``inf``.
"""

from __future__ import annotations

import torch

PSNR_CAP_DB = 100.0   # PSNR of identical images (MSE 0) is reported as this, not inf
_MSE_FLOOR = 10 ** (-PSNR_CAP_DB / 10)


def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]; floats pass through (they must already be in [0, 1])."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def reconstruction_per_image(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """MSE, PSNR (dB) and SSIM of each image pair; ``x``, ``y`` (B,3,H,W) in [0,1] (or uint8)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _to_unit_float(x), _to_unit_float(y)
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (B,C,H,W) batches of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    mse = (x - y).pow(2).flatten(1).mean(1)
    psnr = 10 * torch.log10(1.0 / mse.clamp_min(_MSE_FLOOR))
    # fp32 whatever the caller's autocast says: SSIM's variances are differences of small numbers.
    with torch.autocast(x.device.type, enabled=False):
        ssim = structural_similarity_index_measure(y, x, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                   reduction="none", data_range=1.0)
    return {"mse": mse, "psnr": psnr, "ssim": ssim}


def reconstruction_metrics(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Mean over images of MSE, PSNR (dB, capped at ``PSNR_CAP_DB``) and SSIM (11x11 Gaussian)."""
    return {k: float(v.mean()) for k, v in reconstruction_per_image(x, y).items()}


@torch.no_grad()
def reconstruction_metrics_batched(x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> dict[str, float]:
    """:func:`reconstruction_metrics` over a whole set in chunks (uint8 or [0,1] floats), so that
    thousands of images never live as float copies all at once. Same numbers as one big call."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images vs {len(y)} reconstructions")
    parts: dict[str, list[torch.Tensor]] = {"mse": [], "psnr": [], "ssim": []}
    for i in range(0, len(x), batch_size):
        for k, v in reconstruction_per_image(x[i:i + batch_size], y[i:i + batch_size]).items():
            parts[k].append(v)
    return {k: float(torch.cat(v).mean()) for k, v in parts.items()}
