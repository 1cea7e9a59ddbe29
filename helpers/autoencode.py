"""Run an autoencoder (VQ-VAE or VQ-VAE-2) over a whole image set once: its reconstructions,
its code grids, and what they score (MSE / PSNR / SSIM per split and per vendor, codebook usage).

Kept apart from helpers.metrics so that metrics stays model-agnostic (tensors in, numbers out).
"""

from __future__ import annotations

import torch

from .tensors import to_uint8
from .metrics import codebook_usage, reconstruction_metrics_batched
from .runtime import device_of


def _on(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on ``model``'s device: the one place this module moves its inputs; results go back
    to the CPU, where metrics and saved images are computed."""
    return x.to(device_of(model))


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images -> uint8 reconstructions (eval mode, fp32)."""
    model.eval()
    out = [to_uint8(model(_on(model, images[i:i + batch_size]))[0].float()).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def encode_all(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256):
    """Codes of every image: a (N, h, w) tensor, or a tuple of them for hierarchical models."""
    model.eval()
    parts = [model.encode(_on(model, images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    if isinstance(parts[0], (tuple, list)):
        return tuple(torch.cat(level).cpu() for level in zip(*parts))
    return torch.cat(parts).cpu()


def reconstruction_report(model: torch.nn.Module, splits: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """MSE/PSNR/SSIM per split (``{"train": images, "val": images}``) and codebook usage on val.

    Returns (flat metrics with ``<split>_<metric>`` keys, {split: reconstructions}).
    """
    metrics, recons = {}, {}
    for split, images in splits.items():
        recons[split] = reconstruct(model, images)
        for key, value in reconstruction_metrics_batched(images, recons[split]).items():
            metrics[f"{split}_{key}"] = value
    return metrics, recons


def per_vendor(images: torch.Tensor, recons: torch.Tensor, vendor: torch.Tensor, vendor_names: list[str]) -> list[dict]:
    """PSNR / SSIM of ``recons`` against ``images`` for each vendor's rows (``vendor``: its index per
    row): does the autoencoder serve every drawing style alike?"""
    rows = []
    for v, name in enumerate(vendor_names):
        sel = vendor == v
        if sel.any():
            m = reconstruction_metrics_batched(images[sel], recons[sel])
            rows.append({"vendor": name, "images": int(sel.sum()), "psnr": m["psnr"], "ssim": m["ssim"]})
    return rows


def usage_report(codes: torch.Tensor, num_codes: int, suffix: str = "") -> dict:
    """``val_code_usage{suffix}``, ``val_perplexity{suffix}``, ``val_dead_codes{suffix}`` from val codes."""
    u = codebook_usage(codes, num_codes)
    return {f"val_code_usage{suffix}": u["usage"], f"val_perplexity{suffix}": u["perplexity"],
            f"val_dead_codes{suffix}": u["dead"]}
