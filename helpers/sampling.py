"""Autoregressive sampling of code grids from a prior, and decoding them through a VQ-VAE.

A prior maps codes (B, H, W) -> logits (B, K, H, W) with the logits at (i, j) depending only
on codes before (i, j) in raster order. Sampling fills the grid one position at a time.

Three ways to get the logits at (i, j), fastest first; ``sample_codes`` picks the best the
prior supports (``method="auto"``):

- "incremental": priors with ``start_sampling(batch, shape, labels, cond)`` (both PixelCNNs)
  cache every layer's activations and compute only position (i, j) per step — one forward
  pass worth of work per grid instead of one per position.
- "crop": priors with ``supports_row_crop = True`` depend at row i on input rows <= i only,
  so the network runs on the rows sampled so far (about half the work on an 8x8 grid).
- "naive": re-run the prior on the whole grid at every position (:func:`sample_codes_naive`,
  the reference the others are tested against).

All three compute the same function and draw their random numbers in the same order (one
multinomial draw per batch and position), so the same generator seed gives the same samples
(the incremental path sums in another order, so its logits agree to float rounding, ~1e-6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def _filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / max(temperature, 1e-8)
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, generator) -> torch.Tensor:
    """One code per row of ``logits`` (B, K)."""
    if temperature == 0:   # greedy
        return logits.argmax(-1)
    probs = F.softmax(_filter_logits(logits, temperature, top_k), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _labels_for(labels, n: int, device) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = torch.as_tensor(labels, device=device).long()
    return labels.expand(n).clone() if labels.ndim == 0 else labels


def _device_of(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


METHODS = ("auto", "incremental", "crop", "naive")


def _pick_method(prior, method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if method == "auto":
        if hasattr(prior, "start_sampling"):
            return "incremental"
        return "crop" if getattr(prior, "supports_row_crop", False) else "naive"
    return method


@torch.no_grad()   # not inference_mode: the codes may feed autograd later
def _sample(prior, n, shape, labels, temperature, top_k, batch_size, generator, cond, method, progress):
    H, W = shape
    was_training = prior.training
    prior.eval()   # BatchNorm must use its running statistics, dropout must be off
    device = _device_of(prior)
    labels = _labels_for(labels, n, device)
    out = torch.zeros(n, H, W, dtype=torch.long, device=device)
    n_batches = math.ceil(n / batch_size)
    bar = tqdm(total=n_batches * H * W, desc=f"sampling ({method})", disable=not progress, leave=False)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            codes = out[start:stop]
            lab = None if labels is None else labels[start:stop]
            c = None if cond is None else cond[start:stop].to(device)
            state = prior.start_sampling(stop - start, (H, W), lab, c) if method == "incremental" else None
            for i in range(H):
                rows = i + 1 if method == "crop" else H
                x = codes[:, :rows]
                cx = None if c is None else c[:, :, :rows]
                for j in range(W):
                    if state is not None:
                        logits = state.step(codes, i, j)
                    else:
                        logits = prior(x, lab, cx)[:, :, i, j]
                    codes[:, i, j] = _draw(logits, temperature, top_k, generator)
                    bar.update(1)
    finally:
        bar.close()
        prior.train(was_training)
    return out


def sample_codes(prior, n: int, shape=(8, 8), labels=None, temperature: float = 1.0,
                 top_k: int | None = None, batch_size: int = 256, generator: torch.Generator | None = None,
                 cond: torch.Tensor | None = None, progress: bool = True,
                 method: str = "auto") -> torch.Tensor:
    """Draw ``n`` code grids (n, H, W) long from ``prior``.

    labels: None, one category for all, or (n,) categories (ignored by unconditional priors).
    temperature: divides the logits (< 1: safer, less varied samples; 0: greedy).
    top_k: keep only the k most likely codes at each position.
    generator: a seeded torch.Generator makes the samples reproducible.
    cond: (n, C, H, W) spatial condition (e.g. the embedded top codes for a bottom prior).
    method: "auto" (the fastest the prior supports), "incremental", "crop" or "naive".
    """
    return _sample(prior, n, tuple(shape), labels, temperature, top_k, batch_size, generator, cond,
                   _pick_method(prior, method), progress)


def sample_codes_naive(prior, n: int, shape=(8, 8), labels=None, temperature: float = 1.0,
                       top_k: int | None = None, batch_size: int = 256,
                       generator: torch.Generator | None = None, cond: torch.Tensor | None = None,
                       progress: bool = True) -> torch.Tensor:
    """The reference sampler: re-runs the prior on the whole grid at every position."""
    return _sample(prior, n, tuple(shape), labels, temperature, top_k, batch_size, generator, cond,
                   "naive", progress)


@torch.no_grad()   # not inference_mode: the codes may feed autograd later
def decode(vqvae, codes: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Codes (n, h, w) -> uint8 images (n, 3, H, W) through ``vqvae.decode_codes`` (eval mode)."""
    was_training = vqvae.training
    vqvae.eval()
    device = _device_of(vqvae)
    try:
        parts = []
        for start in range(0, codes.shape[0], batch_size):
            x = vqvae.decode_codes(codes[start:start + batch_size].to(device).long())
            parts.append(((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    finally:
        vqvae.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
