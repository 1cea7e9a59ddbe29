"""What generated and reconstructed images are measured against: seeded evaluation subsets,
the real images of a split with their Inception features (computed once per dataset, cached),
and the cache key of a prior's sample features.
"""

from __future__ import annotations

import torch

from . import paths


def subset(n: int, limit: int | None, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of a seeded subset of ``limit`` of ``n`` items, or all ``n`` when ``limit``
    is None or not smaller: the evaluation sets of a profile (``Profile.eval_limit``)."""
    if limit is None or n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def reference(ds, size: int, split: str, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The real images of ``split`` at ``size`` px that FID and the memorization check compare
    with, and their Inception features (computed once per dataset and kept in the cache): all of
    them, or with ``limit`` the seeded :func:`subset` of that many (``Profile.eval_limit``)."""
    from .metrics import cached_features

    images = ds.images(size, split)
    key = f"{ds.fingerprint}-{split}-{size}"
    if limit is not None and len(images) > limit:
        images, key = images[subset(len(images), limit, seed)], f"{key}-subset{limit}-seed{seed}"
    return images, cached_features(images, key, paths.cache_dir())


def samples_key(ds, profile: str, prior: str, size: int, seed: int, n: int) -> str:
    """Cache key of the Inception features of a prior's FID samples: 02 and 04 compute them and
    name the key in the sample set they save, which 06 loads; the pixel digest that
    :func:`helpers.metrics.cached_features` keeps refuses features of a retrained prior."""
    return f"{ds.fingerprint}-{profile}-samples-{prior}-{size}px-seed{seed}-n{n}"
