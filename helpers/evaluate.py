"""Glue between trained models and helpers.metrics: run a model over a whole image set once,
and read / write the metrics files of DESIGN.md (``artifacts/<profile>/metrics/<stage>.json``).

Kept apart from metrics.py so that metrics stays model-agnostic (tensors in, numbers out).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import paths
from .data import to_uint8
from .metrics import codebook_usage, reconstruction_metrics_batched


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images -> uint8 reconstructions (eval mode, fp32)."""
    model.eval()
    out = [to_uint8(model(images[i:i + batch_size])[0].float()) for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def encode_all(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256):
    """Codes of every image: a (N, h, w) tensor, or a tuple of them for hierarchical models."""
    model.eval()
    parts = [model.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    if isinstance(parts[0], (tuple, list)):
        return tuple(torch.cat(level) for level in zip(*parts))
    return torch.cat(parts)


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


def usage_report(codes: torch.Tensor, num_codes: int, suffix: str = "") -> dict:
    """``val_code_usage{suffix}``, ``val_perplexity{suffix}``, ``val_dead_codes{suffix}`` from val codes."""
    u = codebook_usage(codes, num_codes)
    return {f"val_code_usage{suffix}": u["usage"], f"val_perplexity{suffix}": u["perplexity"],
            f"val_dead_codes{suffix}": u["dead"]}


def save_metrics(profile: str, stage: str, values: dict, protocol: dict) -> Path:
    """Write ``artifacts/<profile>/metrics/<stage>.json`` atomically, with its protocol beside the values."""
    path = paths.metrics_path(profile, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**_plain(values), "protocol": _plain(protocol)}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


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
