"""Codebook metrics: share of codes used at least once, perplexity exp(H(p)) of the
code histogram, dead codes; and the share of nearly blank images in a generated set."""

from __future__ import annotations

import torch


def codebook_usage(codes: torch.Tensor, num_codes: int) -> dict:
    """How much of a codebook a set of code indices uses.

    usage: fraction of the ``num_codes`` codes used at least once; used / dead: counts of
    codes used / never used; perplexity: exp of the entropy of the code histogram (equals
    ``num_codes`` when all are used equally, 1 when one code does everything);
    counts: the histogram itself (int64 tensor of length ``num_codes``).
    """
    codes = torch.as_tensor(codes).reshape(-1).long().cpu()
    if codes.numel() and (codes.min() < 0 or codes.max() >= num_codes):
        raise ValueError(f"codes must lie in [0, {num_codes}), got [{int(codes.min())}, {int(codes.max())}]")
    counts = torch.bincount(codes, minlength=num_codes)
    p = counts.double() / max(int(counts.sum()), 1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    used = int((counts > 0).sum())
    return {"usage": used / num_codes, "used": used, "perplexity": float(entropy.exp()),
            "dead": num_codes - used, "counts": counts}


def blank_share(images: torch.Tensor, level: float = 0.9, coverage: float = 0.97) -> float:
    """Share of uint8 images (N,3,H,W) that are nearly blank: at least ``coverage`` of their pixels
    have every channel above ``level`` (on [0, 1]). A low sampling temperature piles probability
    onto the background code, and FID alone can prefer such sets; about 0.1 % of train emojis
    count as blank."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"blank_share takes uint8 images (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
    if not len(images):
        return 0.0
    white = (images.float() > level * 255).all(dim=1)
    return float((white.float().mean(dim=(1, 2)) >= coverage).float().mean())
