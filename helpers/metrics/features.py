"""The feature cache: Inception costs more per image than anything else the chain runs (5.7 GFLOP
at 299x299; docs/PERFORMANCE.md), so every image set goes through the network once: :func:`cached_features` keeps the features of
real image sets on disk, keyed by the caller's fingerprint (dataset fingerprint + split + image
size) and checked against a digest of the pixels.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from .inception import FEATURES_VERSION, inception_features

# How many images went through the network in this process: the proof (for tests and
# benchmarks) that cached sets are not recomputed.
COUNTERS = {"images": 0, "cache_computed": 0, "cache_reused": 0}


def images_digest(images: torch.Tensor) -> str:
    """SHA1 of the pixels and shape: a cache file made from other images is never reused."""
    h = hashlib.sha1(str(tuple(images.shape)).encode())
    h.update(images.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def features_cache_path(key: str, cache_dir: str | Path) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")
    return Path(cache_dir) / f"inception_{safe}.pt"


def cached_features(images: torch.Tensor, key: str, cache_dir: str | Path, *, verbose: bool = True,
                    **kwargs) -> torch.Tensor:
    """Inception features of a real image set, computed once and kept on disk.

    ``key`` names the set: the dataset fingerprint + split name + image size, e.g.
    ``f"{fingerprint}-train-32"``. The file also records :data:`FEATURES_VERSION` and a digest
    of the pixels; if either differs the features are recomputed (and the file replaced).
    Prints whether they were ``computed`` or ``reused``.
    """
    from ..checkpoints import CheckpointError, atomic_save, safe_load

    path = features_cache_path(key, cache_dir)
    digest = images_digest(images)
    if path.exists():
        try:
            entry = safe_load(path)
        except CheckpointError as e:
            entry, why = None, str(e)
        else:
            why = ("another network version" if entry.get("version") != FEATURES_VERSION
                   else "other images under the same key" if entry.get("digest") != digest else None)
        if entry is not None and why is None:
            COUNTERS["cache_reused"] += 1
            if verbose:
                print(f"inception features '{key}': reused ({len(images)} images, {path})")
            return entry["features"].double()
        if verbose:
            print(f"inception features '{key}': cache not usable ({why}); recomputing")
    features = inception_features(images, desc=f"inception features {key}", **kwargs)
    # float32 on disk: the network computes in fp32, so nothing is lost and the file halves.
    atomic_save({"key": key, "version": FEATURES_VERSION, "digest": digest, "n": len(images),
                 "image_shape": list(images.shape[1:]), "features": features.float()}, path)
    COUNTERS["cache_computed"] += 1
    if verbose:
        print(f"inception features '{key}': computed ({len(images)} images) -> {path}")
    return features
