"""Glue between trained models and helpers.metrics: run a model over a whole image set once,
and read / write the metrics files of DESIGN.md (``artifacts/<profile>/metrics/<stage>.json``).

Kept apart from metrics.py so that metrics stays model-agnostic (tensors in, numbers out).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import paths
from .checkpoints import atomic_write_json
from .tensors import to_uint8
from .metrics import codebook_usage, reconstruction_metrics_batched
from .runtime import device_of, machine


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


def save_metrics(profile: str, stage: str, values: dict, protocol: dict) -> Path:
    """Write ``artifacts/<profile>/metrics/<stage>.json`` atomically, with its protocol beside the values:
    the one given, and the machine and commit it ran on (:func:`helpers.runtime.machine`)."""
    protocol = {**protocol, "machine": machine()}
    return atomic_write_json({**_plain(values), "protocol": _plain(protocol)}, paths.metrics_path(profile, stage))


def load_metrics(profile: str, stage: str) -> dict:
    """The metrics a stage wrote; "run NN_name first" when it has not run."""
    path = paths.require(paths.metrics_path(profile, stage), f"{stage}_metrics")
    return json.loads(path.read_text())


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def draw_labels(categories: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` categories drawn from the empirical distribution of ``categories`` (e.g. the train set),
    so class-conditional samples are compared with real images of the same category mix."""
    counts = torch.bincount(categories.long()).float()
    return torch.multinomial(counts, n, replacement=True, generator=torch.Generator().manual_seed(seed))


def sample_images(prior, vqvae, n: int, *, shape=(8, 8), labels=None, temperature: float = 1.0,
                  top_k: int | None = None, guidance: float = 1.0, seed: int = 0, progress: bool = True,
                  cond_fn=None) -> torch.Tensor:
    """``n`` uint8 images: codes sampled from ``prior`` (seeded), decoded by ``vqvae``.

    ``prior`` may be a (top, bottom) pair with a VQ-VAE-2: then the codes are drawn level by
    level (``sampling.sample_hierarchical``; ``cond_fn`` as there) and ``shape`` is ignored.
    """
    from .sampling import decode, sample_codes, sample_hierarchical

    generator = torch.Generator().manual_seed(seed)
    if isinstance(prior, (tuple, list)):
        top, bottom = prior
        return sample_hierarchical(top, bottom, n, labels=labels, temperature=temperature, top_k=top_k,
                                   guidance=guidance, generator=generator, cond_fn=cond_fn, vqvae2=vqvae,
                                   progress=progress).images
    codes = sample_codes(prior, n, shape, labels=labels, temperature=temperature, top_k=top_k,
                         guidance=guidance, generator=generator, progress=progress)
    return decode(vqvae, codes)


def subset(n: int, limit: int | None, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of a seeded subset of ``limit`` of ``n`` items, or all ``n`` when ``limit``
    is None or not smaller: the evaluation sets of a profile (``Profile.eval_limit``)."""
    if limit is None or n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def reference(ds, size: int, split: str, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The real images of ``split`` at ``size`` px that FID and the memorization check compare
    with, and their Inception features (computed once per dataset and kept in the cache): all of
    them, or with ``limit`` the seeded :func:`subset` of that many (the quick profile's first look)."""
    from .metrics import cached_features

    images = ds.images(size, split)
    key = f"{ds.fingerprint}-{split}-{size}"
    if limit is not None and len(images) > limit:
        images, key = images[subset(len(images), limit, seed)], f"{key}-subset{limit}-seed{seed}"
    return images, cached_features(images, key, paths.cache_dir())


def samples_key(ds, profile: str, prior: str, size: int, seed: int, n: int) -> str:
    """Cache key of the Inception features of a prior's FID samples: 02 computes them, 06 draws the
    same samples (same seed and categories) and reuses them; the pixel digest that
    :func:`helpers.metrics.cached_features` keeps refuses features of a retrained prior."""
    return f"{ds.fingerprint}-{profile}-samples-{prior}-{size}px-seed{seed}-n{n}"


def choose_sampling(prior, vqvae, settings: list[dict], real_features: torch.Tensor, *, n: int, labels,
                    shape=(8, 8), seed: int = 0, cond_fn=None) -> list[dict]:
    """FID of ``n`` samples per setting (``{"temperature", "top_k"[, "guidance"]}``) against ``real_features``
    (the val set: settings are chosen on val, never on the train set the final FID uses), and the
    share of nearly blank samples (:func:`helpers.metrics.blank_share`) beside it."""
    from .metrics import blank_share, fid_from_features, inception_features

    rows = []
    for setting in settings:
        images = sample_images(prior, vqvae, n, shape=shape, labels=labels, seed=seed, progress=False,
                               cond_fn=cond_fn, **setting)
        rows.append({**setting, "val_fid": fid_from_features(inception_features(images, progress=False),
                                                             real_features),
                     "blank_share": blank_share(images)})
    return rows


def pick_setting(rows: list[dict], max_blank: float = 0.05) -> dict:
    """The row of :func:`choose_sampling` with the lowest val FID among those whose samples are
    nearly blank less often than ``max_blank``; when none is, the one with the fewest blank samples
    (FID breaks ties). A low temperature piles probability onto the background code, and FID alone
    can prefer a setting whose samples are often empty (docs/EXPERIMENTS.md, "The priors")."""
    if not rows:
        raise ValueError("pick_setting needs at least one scored setting")
    kept = [r for r in rows if r["blank_share"] < max_blank]
    if kept:
        return min(kept, key=lambda r: r["val_fid"])
    return min(rows, key=lambda r: (r["blank_share"], r["val_fid"]))
