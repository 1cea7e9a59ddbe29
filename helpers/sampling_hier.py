"""Hierarchical sampling for VQ-VAE-2: top codes, then bottom codes given the top, then pixels.

(To be merged into helpers/sampling.py.) Each level is drawn by :func:`sampling.sample_codes`,
so temperature, top-k, labels, seeds and the incremental fast path (PixelSNAIL and both
PixelCNNs have ``start_sampling``) behave as for the 32x32 priors.

Work that can be reused is done once: the bottom prior's condition (PixelSNAIL: its
conditioning ResNet over the top codes; any other prior: ``cond_fn(top_codes)``, e.g.
:meth:`VQVAE2.top_condition`) is computed once per sample batch and handed to the sampler as
a map, never recomputed per position.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .sampling import _device_of, sample_codes


class HierarchicalSamples(NamedTuple):
    top: torch.Tensor                    # (n, 8, 8) long
    bottom: torch.Tensor                 # (n, 16, 16) long
    images: torch.Tensor | None          # (n, 3, 64, 64) uint8 when a VQ-VAE-2 was given


@torch.inference_mode()
def bottom_condition(bottom_prior, codes_top: torch.Tensor, cond_fn: Callable | None = None,
                     batch_size: int = 250) -> torch.Tensor:
    """The bottom prior's condition for the given top codes, computed once per batch of
    ``batch_size``: ``bottom_prior.condition`` if it has one (PixelSNAIL), else ``cond_fn``."""
    fn = getattr(bottom_prior, "condition", None) if cond_fn is None else cond_fn
    if fn is None:
        raise ValueError("the bottom prior has no condition(); pass cond_fn (e.g. vqvae2.top_condition)")
    was_training = bottom_prior.training
    bottom_prior.eval()
    try:
        device = _device_of(bottom_prior)
        parts = [fn(codes_top[s:s + batch_size].to(device)).float()
                 for s in range(0, len(codes_top), batch_size)]
    finally:
        bottom_prior.train(was_training)
    return torch.cat(parts)


@torch.inference_mode()
def decode_hierarchical(vqvae2, codes_top: torch.Tensor, codes_bottom: torch.Tensor,
                        batch_size: int = 250) -> torch.Tensor:
    """Codes of both levels -> uint8 images through ``vqvae2.decode_codes`` (eval mode)."""
    was_training = vqvae2.training
    vqvae2.eval()
    device = _device_of(vqvae2)
    try:
        parts = []
        for s in range(0, len(codes_top), batch_size):
            x = vqvae2.decode_codes(codes_top[s:s + batch_size].to(device).long(),
                                    codes_bottom[s:s + batch_size].to(device).long())
            parts.append(((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    finally:
        vqvae2.train(was_training)
    return torch.cat(parts)


def sample_hierarchical(top_prior, bottom_prior, n: int, *, labels=None, temperature: float = 1.0,
                        top_k: int | None = None, bottom_temperature: float | None = None,
                        bottom_top_k: int | None = None, shapes=((8, 8), (16, 16)), batch_size: int = 250,
                        generator: torch.Generator | None = None, cond_fn: Callable | None = None,
                        vqvae2=None, progress: bool = True) -> HierarchicalSamples:
    """Draw ``n`` top grids, then ``n`` bottom grids conditioned on them (and decode them when
    ``vqvae2`` is given).

    labels: None, one category or (n,) categories, used by both priors (ignored by unconditional ones).
    temperature / top_k: as in :func:`sampling.sample_codes`, for the top; the bottom uses
    ``bottom_temperature`` / ``bottom_top_k`` when given, else the same.
    cond_fn: top codes -> condition map of a bottom prior without ``condition`` (e.g. a gated
    PixelCNN trained with ``cond=vqvae2.top_condition(codes_top)``).
    """
    (ht, wt), (hb, wb) = shapes
    codes_top = sample_codes(top_prior, n, (ht, wt), labels, temperature, top_k, batch_size, generator,
                             None, progress)
    cond = bottom_condition(bottom_prior, codes_top, cond_fn, batch_size)
    codes_bottom = sample_codes(bottom_prior, n, (hb, wb), labels,
                                temperature if bottom_temperature is None else bottom_temperature,
                                top_k if bottom_top_k is None else bottom_top_k,
                                batch_size, generator, cond, progress)
    images = decode_hierarchical(vqvae2, codes_top, codes_bottom, batch_size) if vqvae2 is not None else None
    return HierarchicalSamples(codes_top.cpu(), codes_bottom.cpu(), images)


__all__ = ["sample_hierarchical", "bottom_condition", "decode_hierarchical",
           "HierarchicalSamples"]
