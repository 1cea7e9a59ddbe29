"""Plots for the notebooks: small, generic, each returns its matplotlib Figure.

Images are taken as stored (uint8 NCHW) or as model outputs already mapped to [0, 1]
(``helpers.tensors.to_unit``); nothing here knows about datasets or models.
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


def compare_grid(rows: Sequence[torch.Tensor], labels: Sequence[str], *, title: str | None = None,
                 scale: float = 1.0):
    """Equal-length image batches stacked as rows (e.g. originals over reconstructions)."""
    n = len(rows[0])
    if any(len(r) != n for r in rows):
        raise ValueError("every row needs the same number of images")
    return image_grid(torch.cat([_as_unit(r) for r in rows]), nrow=n, title=title, row_labels=list(labels),
                      scale=scale)


def plot_history(history: dict, keys: Sequence[str] = ("loss",), *, title: str | None = None, log: bool = True,
                 x: str = "epoch"):
    """Train and val curves for each of ``keys`` (``train_<k>`` / ``val_<k>`` in the history), against
    ``x``: "epoch", or "step" (the optimizer steps done at the end of each epoch). With ``x="step"``
    a run validated between epochs (``TrainConfig.curve_every``) also shows those val points."""
    keys = [k for k in keys if f"train_{k}" in history or f"val_{k}" in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split, style in (("train", "-"), ("val", "--")):
            values = history.get(f"{split}_{key}")
            if values:
                ax.plot(history[x][-len(values):], values, style, label=split)
        if x == "step" and history.get(f"curve_val_{key}"):
            ax.plot(history["curve_step"], history[f"curve_val_{key}"], ".:", label="val, between epochs")
        ax.set_xlabel(x)
        ax.set_title(key)
        if log and all(v > 0 for v in history.get(f"train_{key}", [1])):
            ax.set_yscale("log")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def table(rows: dict | Sequence[dict], *, index: str | None = None, floatfmt: str = "{:.4g}"):
    """A pandas DataFrame for display: one row per dict (or one column of key/value pairs for a dict,
    whose nested lists and dicts are left out: show them as tables of their own)."""
    import pandas as pd

    if isinstance(rows, dict):
        rows = {k: v for k, v in rows.items() if not isinstance(v, (list, dict))}
        df = pd.DataFrame({"value": [floatfmt.format(v) if isinstance(v, float) else v for v in rows.values()]},
                          index=list(rows.keys()))
        return df
    df = pd.DataFrame(list(rows))
    return df.set_index(index) if index else df


def codes_beside(image: torch.Tensor, codes: torch.Tensor, *, title: str | None = None):
    """One image (C, H, W) beside its grid of integer codes (h, w), each code written in its cell:
    what an autoencoder turns the image into."""
    image, codes = _as_unit(image[None])[0], codes.detach().cpu()
    h, w = codes.shape
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.6), gridspec_kw={"width_ratios": [1, 1.15]})
    left.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    right.imshow(codes.numpy(), cmap="Pastel1", interpolation="nearest")
    size = 8 if max(h, w) <= 8 else 5
    for (i, j), code in zip(((i, j) for i in range(h) for j in range(w)), codes.flatten().tolist()):
        right.text(j, i, str(code), ha="center", va="center", fontsize=size)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    left.set_title("image")
    right.set_title(f"its {h}x{w} codes")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def source_lines(obj, notes: dict[str, str]):
    """The lines of ``obj``'s source (a function or class) that contain each key of ``notes``, as
    a table (its ``.data`` the DataFrame): where the line is, the line itself and what it does (the
    note). A key found nowhere is an error, so the table cannot go on showing code that has changed."""
    import inspect

    import pandas as pd

    lines, first = inspect.getsourcelines(obj)
    where = inspect.getsourcefile(obj)
    rows = []
    for needle, note in notes.items():
        hits = [k for k, line in enumerate(lines) if needle in line]
        if not hits:
            raise ValueError(f"no line of {obj.__qualname__} contains {needle!r}")
        line = lines[hits[0]].strip()
        rows.append({"line": f"{where.rsplit('/', 1)[-1]}:{first + hits[0]}", "code": line, "what it does": note})
    # a Styler, not a DataFrame: pandas would cut the code to 50 characters
    return pd.DataFrame(rows).set_index("line").style.set_properties(**{"text-align": "left"})


def beside_nearest(samples: torch.Tensor, nearest: torch.Tensor, row_labels: Sequence[str], *, per_row: int = 8,
                   title: str | None = None):
    """Rows of ``per_row`` samples, each row above the nearest train image of every sample in it,
    labelled by ``row_labels`` (one per sample row): a reader sees at a glance what is new."""
    if samples.shape != nearest.shape or len(samples) != per_row * len(row_labels):
        raise ValueError(f"want {per_row} x {len(row_labels)} samples and as many nearest images, "
                         f"got {tuple(samples.shape)} and {tuple(nearest.shape)}")
    rows = [t for r in range(len(row_labels)) for t in (samples[r * per_row:(r + 1) * per_row],
                                                         nearest[r * per_row:(r + 1) * per_row])]
    labels = [t for name in row_labels for t in (name, "nearest train")]
    return image_grid(torch.cat(rows), nrow=per_row, row_labels=labels, title=title)


class LiveGrid:
    """An epoch callback for the Trainer that redraws one figure in place every ``every`` epochs
    (live in JupyterLab; under papermill the last drawing is what the executed notebook keeps).
    ``draw(model) -> Figure`` makes the picture."""

    def __init__(self, draw, every: int = 5, title: str = "epoch {epoch}"):
        self.draw, self.every, self.title = draw, every, title
        self.handle = None

    def __call__(self, trainer, record: dict) -> None:
        epoch = record["epoch"]
        if epoch % self.every and epoch != trainer.config.epochs:
            return
        from IPython.display import display

        was_training = trainer.model.training
        fig = self.draw(trainer.model)
        trainer.model.train(was_training)
        fig.suptitle(self.title.format(**record))
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def usage_histograms(levels: dict[str, dict], *, title: str | None = None):
    """One panel per codebook (``{name: helpers.analysis.usage(...)}``): code counts sorted from the
    most used down, log scale, with usage, perplexity and dead codes in the panel title."""
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 3.0), squeeze=False)
    for ax, (name, u) in zip(axes[0], levels.items()):
        counts = u["sorted_counts"].numpy()
        ax.bar(range(len(counts)), counts.clip(min=0.8), width=1.0, color="tab:blue")
        ax.set_yscale("log")
        ax.set_xlabel("code (sorted by use)")
        ax.set_ylabel("count")
        ax.set_title(f"{name}: {u['usage']:.0%} used, perplexity {u['perplexity']:.0f}, {u['dead']} dead",
                     fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def scatter_2d(xy, labels=None, *, title: str | None = None, sizes=None):
    """A 2-D embedding (e.g. t-SNE of the codebook), coloured by cluster label; ``sizes`` (e.g. code
    counts) scale the points."""
    import numpy as np

    xy = np.asarray(xy)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if sizes is not None:
        sizes = np.asarray(sizes, dtype=float)     # numpy or torch counts alike
    s = 12 if sizes is None else 4 + 60 * np.sqrt(sizes / max(sizes.max(), 1.0))
    ax.scatter(xy[:, 0], xy[:, 1], c=None if labels is None else np.asarray(labels), cmap="tab20", s=s,
               alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def score_curve(scores: dict, *, best=None, xlabel: str = "k", ylabel: str = "silhouette",
                title: str | None = None):
    """A score per setting (e.g. silhouette per k of k-means) with the chosen one marked."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ks = sorted(scores)
    ax.plot(ks, [scores[k] for k in ks], "o-")
    if best is not None:
        ax.axvline(best, color="tab:red", linestyle="--", label=f"{xlabel} = {best}")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def histograms(series: dict, *, marks: dict | None = None, bins: int = 40, xlabel: str = "distance",
               title: str | None = None):
    """Overlaid density histograms of a few 1-D samples (``{label: values}``, e.g. nearest-train
    distances of generated samples and of val images), on shared bins, with vertical lines at
    ``marks`` (``{label: x}``, e.g. thresholds)."""
    import numpy as np

    values = {k: np.asarray(v, dtype=float).ravel() for k, v in series.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for label, v in values.items():
        ax.hist(v, bins=edges, density=True, alpha=0.5, label=f"{label} (n = {len(v)})")
    for (label, x), style in zip((marks or {}).items(), ["--", ":", "-.", "-"] * 4):
        ax.axvline(x, color="black", linestyle=style, linewidth=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_figure(fig, profile: str, name: str, dpi: int = 150):
    """Write ``fig`` as ``artifacts/<profile>/figures/<name>.png`` (what ``python -m helpers.report``
    copies into docs/results) and return it, so a notebook cell can end with the call."""
    from .paths import figures_dir

    path = figures_dir(profile) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig
