"""The split: 80/20 by emoji identity, seeded, so no validation emoji is seen in any style.

(The original report's split, a random 80/20 of images, is :func:`random_split`: only for setting
our figures beside the report's, see ``helpers.profiles.SPLITS``.)

Every image of an identity (all vendors, all skin tones) is on one side, and so is every
identity that shares a pixel-identical image with it (some vendors draw flags or family glyphs
alike). Identities are ordered by a seeded hash of their name, so an emoji keeps its side
whichever vendors or subset are chosen.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np
import torch

VAL_FRACTION = 0.2
# What every metrics file says of the split (its "protocol"): one phrase per rule, kept with it.
SPLIT_RULES = {"identity": "80/20 by emoji identity",
               "random": "random 80/20 of images (the report's protocol)"}


def rank(salt: str, seed: int, names: Iterable[str]) -> list[str]:
    """Names ordered by a seeded hash: a stable shuffle that does not depend on what else is present."""
    return sorted(names, key=lambda n: hashlib.sha256(f"{salt}:{seed}:{n}".encode()).hexdigest())


def merge_duplicates(identity: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``identity`` with every set of identities that share a pixel-identical image merged into
    one (labelled by its smallest member): a vendor that draws two emojis alike (flags, family
    glyphs) must not put one copy in train and the other in val."""
    identity = torch.as_tensor(identity, dtype=torch.long)
    parent = {g: g for g in identity.tolist()}

    def root(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first: dict[bytes, int] = {}
    for i, img in enumerate(images):
        seen = first.setdefault(hashlib.sha256(img.numpy().tobytes()).digest(), int(identity[i]))
        a, b = root(seen), root(int(identity[i]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return torch.tensor([root(g) for g in identity.tolist()], dtype=torch.long)


def split(identity: torch.Tensor, seed: int, val_fraction: float = VAL_FRACTION,
          identity_names: list[str] | None = None,
          images: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), grouped by identity: every image of an identity (all vendors, all
    skin tones) is on one side; with ``images``, so is every identity that shares a
    pixel-identical image with it (:func:`merge_duplicates`). Identities are ordered by a seeded
    hash of their name (of their index if no names are given) and taken into val until val holds
    the share of *images* closest to ``val_fraction``. Deterministic, and an emoji tends to keep
    its side across subsets and vendor choices, since the order does not depend on what else is
    present."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    identity = torch.as_tensor(identity, dtype=torch.long)
    if images is not None:
        identity = merge_duplicates(identity, images)
    groups, sizes = torch.unique(identity, return_counts=True)
    key = {g: (identity_names[g] if identity_names is not None else str(g)) for g in groups.tolist()}
    size_of = dict(zip(groups.tolist(), sizes.tolist()))
    order = {k: i for i, k in enumerate(rank("split", seed, key.values()))}
    ranked = sorted(key, key=lambda g: order[key[g]])
    target = val_fraction * len(identity)
    cum = np.cumsum([size_of[g] for g in ranked])
    if len(ranked) >= 2:   # both sides non-empty: 1 .. G-1 identities in val
        n_val = 1 + int(np.argmin(np.abs(cum[:-1] - target)))
    else:
        n_val = 0
    val_groups = torch.tensor(ranked[:n_val], dtype=torch.long)
    is_val = torch.isin(identity, val_groups)
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()



def random_split(n: int, seed: int, val_fraction: float = VAL_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) of a seeded random 80/20 of ``n`` images, identities ignored: the
    original report's protocol. Another drawing or skin tone of most val emojis sits in train."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise ValueError(f"a split needs at least 2 images, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    return order[n_val:].sort().values, order[:n_val].sort().values


def seen_share(identity: torch.Tensor, train_idx: torch.Tensor, val_idx: torch.Tensor) -> float:
    """The share of val images whose emoji has an image (another drawing, a skin tone) in train:
    0 on the identity split, most of them on a random one."""
    if len(val_idx) == 0:
        return 0.0
    return float(torch.isin(identity[val_idx], identity[train_idx]).float().mean())
