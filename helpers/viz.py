"""Plots for the notebooks: small, generic, each returns its matplotlib Figure.

Images are taken as stored (uint8 NCHW) or as model outputs already mapped to [0, 1]
(``helpers.data.to_unit``); nothing here knows about datasets or models.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch


def _as_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] NCHW -> float [0, 1] NCHW on the CPU."""
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float().clamp(0.0, 1.0)


def image_grid(images: torch.Tensor, nrow: int = 8, *, title: str | None = None,
               row_labels: Sequence[str] | None = None, pad: int = 2, scale: float = 1.0):
    """A grid of ``images`` (N, C, H, W; uint8 or float in [0, 1]), ``nrow`` per row, on white.
    ``row_labels`` name the rows (e.g. vendors); ``scale`` multiplies the figure size."""
    from torchvision.utils import make_grid

    images = _as_unit(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"image_grid wants a non-empty (N, C, H, W) batch, got {tuple(images.shape)}")
    grid = make_grid(images, nrow=nrow, padding=pad, pad_value=1.0)
    h, w = grid.shape[1:]
    width = min(14.0, max(2.0, w / 96.0 * scale))          # ~1 screen pixel per image pixel, capped
    fig, ax = plt.subplots(figsize=(width + (1.2 if row_labels else 0.0),
                                    width * h / w + (0.45 if title else 0.1)))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        cell = images.shape[2] + pad
        ax.set_yticks([pad + cell * i + images.shape[2] / 2 for i in range(len(row_labels))])
        ax.set_yticklabels(row_labels)
        ax.tick_params(length=0)
    else:
        ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def bar_counts(table, x: str, y: str = "images", *, hue: str | None = None, title: str | None = None,
               horizontal: bool = False, log: bool = False, hue_order: Sequence[str] | None = None):
    """A seaborn bar plot of counts from a long table (e.g. ``helpers.data.counts``), summed
    over the other columns; bars are labelled with their values."""
    import seaborn as sns

    keys = [x] + ([hue] if hue else [])
    data = table.groupby(keys, as_index=False)[y].sum()
    order = data.groupby(x)[y].sum().sort_values(ascending=False).index.tolist()
    n = len(order)
    fig, ax = plt.subplots(figsize=(7, 0.35 * n + 1.2) if horizontal else (max(5, 0.7 * n + 2), 3.6))
    sns.barplot(data=data, x=y if horizontal else x, y=x if horizontal else y, hue=hue, order=order,
                hue_order=hue_order,
                orient="h" if horizontal else "v", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8, padding=2)
    if log:
        (ax.set_xscale if horizontal else ax.set_yscale)("log")
    if not horizontal and n > 4:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    if title:
        ax.set_title(title)
    sns.despine(ax=ax)
    fig.tight_layout()
    return fig
