"""The dataset file's contract: :class:`EmojiDataset`, :func:`load_dataset` and the tables 00 shows.

Rows are images; every row has 32 and 64 px, and ``index128`` names the rows that also have a
genuine 128 px image. Labels: vendor (the drawing's style), category and its finer sub-category
(emoji.json's "face-smiling", "animal-mammal", ...), identity (the split's unit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import paths
from ..profiles import get_profile
from .errors import DataError
from .split import rank

FORMAT_VERSION = 4   # 4: sub-categories; 3: every image framed alike (framing.py); 2: duplicates share a side of the split
# What a prior may be conditioned on: the emoji.json category (10 groups) or its sub-category (~100).
LABELS = ("category", "subcategory")


@dataclass
class EmojiDataset:
    """What ``dataset.pt`` holds; rows are images, ``index128`` says which rows have 128 px."""
    images32: torch.Tensor        # (N, 3, 32, 32) uint8
    images64: torch.Tensor        # (N, 3, 64, 64) uint8
    images128: torch.Tensor       # (M, 3, 128, 128) uint8, genuine renderings only
    index128: torch.Tensor        # (M,) long: the row of each 128 px image
    vendor: torch.Tensor          # (N,) long into vendor_names
    vendor_names: list[str]
    category: torch.Tensor        # (N,) long into category_names
    category_names: list[str]
    subcategory: torch.Tensor     # (N,) long into subcategory_names: a finer group within the category
    subcategory_names: list[str]
    identity: torch.Tensor        # (N,) long into identity_names: the split's unit
    identity_names: list[str]
    names: list[str]              # (N,) human-readable name of each image
    codes: list[str]              # (N,) unified code (or file stem) of each image
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    fingerprint: str
    sources: list[str]
    seed: int
    split: str = "identity"       # how train_idx / val_idx were drawn (helpers.profiles.SPLITS)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images32)

    def classes(self, label: str = "category") -> tuple[torch.Tensor, list[str]]:
        """Each image's class under ``label`` (one of :data:`LABELS`) and the class names."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}; choose one of {list(LABELS)}")
        return (self.subcategory, self.subcategory_names) if label == "subcategory" \
            else (self.category, self.category_names)

    def rows(self, split: str | None = None) -> torch.Tensor:
        """Row indices of ``"train"``, ``"val"`` or (None) all images."""
        if split is None:
            return torch.arange(len(self))
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train', 'val' or None, not {split!r}")
        return self.train_idx if split == "train" else self.val_idx

    def images(self, size: int, split: str | None = None) -> torch.Tensor:
        """uint8 images at 32, 64 or 128 px of a split (128: only the rows that have it)."""
        if size == 128:
            return self.images128[torch.isin(self.index128, self.rows(split))]
        if size not in (32, 64):
            raise ValueError(f"size must be 32, 64 or 128, not {size}")
        return (self.images32 if size == 32 else self.images64)[self.rows(split)]

    def superres_rows(self, split: str | None = None) -> torch.Tensor:
        """The rows of ``split`` that have a 128 px image, in the order :meth:`superres_pairs` gives them."""
        return self.index128[torch.isin(self.index128, self.rows(split))]

    def superres_pairs(self, split: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(64 px, 128 px) uint8 pairs of the same images, for super-resolution."""
        keep = torch.isin(self.index128, self.rows(split))
        return self.images64[self.index128[keep]], self.images128[keep]


def subcategory_parents(subcategory: torch.Tensor, category: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) the category of each of ``n`` sub-categories, from the images' (``subcategory``,
    ``category``) pairs: emoji.json nests every sub-category in one category (-1: no image)."""
    parents = torch.full((n,), -1, dtype=torch.long)
    parents[subcategory] = category
    return parents


def load_dataset(profile_name: str | None = None) -> EmojiDataset:
    """The dataset of a profile (default: $EMOJIVQ_PROFILE, else full); says "run 00_data first"."""
    from ..checkpoints import safe_load

    name = get_profile(profile_name).name
    d = safe_load(paths.require(paths.dataset_path(name), "dataset"), mmap=True)
    if not isinstance(d, dict) or d.get("format") != FORMAT_VERSION:
        raise DataError(f"{paths.dataset_path(name)} was written by another version of emoji-vq: "
                        "run 00_data again (build_dataset(..., force=True)).")
    fields = set(EmojiDataset.__dataclass_fields__) - {"extra"}
    return EmojiDataset(**{k: d[k] for k in fields if k in d},
                        extra={k: v for k, v in d.items() if k not in fields})



def counts(ds: EmojiDataset):
    """A long table (pandas) of image counts by vendor, category and split."""
    import pandas as pd

    split_of = np.full(len(ds), "train", dtype=object)
    split_of[ds.val_idx.numpy()] = "val"
    df = pd.DataFrame({"vendor": [ds.vendor_names[v] for v in ds.vendor.tolist()],
                       "category": [ds.category_names[c] for c in ds.category.tolist()],
                       "split": split_of})
    return df.value_counts().rename("images").reset_index()


def split_table(ds: EmojiDataset):
    """Images and emojis per split and vendor, plus the 128 px rows (pandas)."""
    import pandas as pd

    rows = []
    for split_name in ("train", "val"):
        idx = ds.rows(split_name)
        for v, vname in enumerate(ds.vendor_names):
            sel = idx[ds.vendor[idx] == v]
            rows.append({"split": split_name, "vendor": vname, "images": len(sel),
                         "emojis": len(torch.unique(ds.identity[sel])),
                         "images_128px": int(torch.isin(ds.index128, sel).sum())})
    df = pd.DataFrame(rows)
    total = df.groupby("split", sort=False)[["images", "images_128px"]].sum()
    total["emojis"] = [len(torch.unique(ds.identity[ds.rows(s)])) for s in total.index]
    total["share"] = (total["images"] / total["images"].sum()).round(3)
    return df, total.reset_index()


def aligned_samples(ds: EmojiDataset, n: int = 8, seed: int = 0, size: int = 64,
                    split: str | None = None) -> tuple[torch.Tensor, list[str]]:
    """The same ``n`` emojis (seeded choice) in every vendor: (V*n, 3, size, size) uint8, row by
    vendor, and the vendor names. Emojis missing in a vendor are skipped."""
    rows = ds.rows(split)
    by_vendor = {}
    for v in range(len(ds.vendor_names)):
        sel = rows[ds.vendor[rows] == v]
        by_vendor[v] = {ds.codes[i]: i for i in sel.tolist()}
    common = set.intersection(*(set(m) for m in by_vendor.values())) if by_vendor else set()
    picks = rank("samples", seed, sorted(common))[:n]
    if len(picks) < n:   # vendors share few emojis (e.g. a folder): fill per vendor
        picks_v = {v: picks + rank("samples", seed, sorted(set(m) - set(picks)))[:n - len(picks)]
                   for v, m in by_vendor.items()}
    else:
        picks_v = {v: picks for v in by_vendor}
    source = {32: ds.images32, 64: ds.images64}.get(size)
    if source is None:
        raise ValueError("size must be 32 or 64")
    out = [source[by_vendor[v][c]] for v in by_vendor for c in picks_v[v]]
    return torch.stack(out) if out else source[:0], list(ds.vendor_names)


def size_ladder(ds: EmojiDataset, n: int = 8, seed: int = 0) -> dict[int, torch.Tensor]:
    """The same ``n`` images (seeded choice among rows that have 128 px) at 32, 64 and 128 px."""
    candidates = ds.index128.tolist() if len(ds.index128) else list(range(len(ds)))
    first_row = {}
    for r in candidates:
        first_row.setdefault(ds.codes[r], r)
    rows = torch.tensor([first_row[c] for c in rank("ladder", seed, sorted(first_row))[:n]], dtype=torch.long)
    ladder = {32: ds.images32[rows], 64: ds.images64[rows]}
    if len(ds.index128):
        where = {r: i for i, r in enumerate(ds.index128.tolist())}
        ladder[128] = ds.images128[torch.tensor([where[r] for r in rows.tolist()], dtype=torch.long)]
    return ladder


def framing_table(ds: EmojiDataset):
    """Per vendor: images, the content box's share of the source canvas before framing (median,
    10th and 90th percentile), and the share of images with a genuine 128 px version (pandas)."""
    import pandas as pd

    share = ds.extra.get("content_share")
    has128 = torch.zeros(len(ds), dtype=torch.bool)
    has128[ds.index128] = True
    rows = []
    for v, vname in enumerate(ds.vendor_names):
        sel = ds.vendor == v
        q = (torch.quantile(share[sel], torch.tensor([0.1, 0.5, 0.9])).tolist()
             if share is not None and sel.any() else [float("nan")] * 3)
        rows.append({"vendor": vname, "images": int(sel.sum()), "left out (not in the catalogue)":
                     ds.extra.get("left_out", {}).get(vname, 0), "content share p10": round(q[0], 3),
                     "median": round(q[1], 3), "p90": round(q[2], 3),
                     "with 128 px": round(float(has128[sel].float().mean()) if sel.any() else 0.0, 3)})
    return pd.DataFrame(rows)
