"""What the models learned (06_analysis): codebook usage, the geometry of the codebook (t-SNE,
k-means with k chosen by silhouette), each code shown by the patch it decodes to, and
memorization — are generated samples new, or near-copies of train images?

Functions take tensors (codes, codebooks, features, images) and return data; the plots are in
helpers.viz. Distances and decodes run in batches.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .metrics import codebook_usage

# ---------------------------------------------------------------------------------------------
# codebook usage


def usage(codes: torch.Tensor, num_codes: int) -> dict:
    """Histogram data of one codebook: ``counts`` (per code, int64), ``sorted_counts`` (descending,
    what a usage histogram plots), ``usage`` (share used), ``used``, ``dead`` and ``perplexity``."""
    u = codebook_usage(codes, num_codes)
    return {**u, "sorted_counts": u["counts"].sort(descending=True).values, "num_codes": num_codes}


def usage_table(levels: dict[str, dict]):
    """A pandas table, one row per codebook (``{name: usage(...)}``): size, used, dead, usage, perplexity."""
    import pandas as pd

    return pd.DataFrame([{"codebook": name, "codes": u["num_codes"], "used": u["used"], "dead": u["dead"],
                          "usage": round(u["usage"], 4), "perplexity": round(u["perplexity"], 1)}
                         for name, u in levels.items()]).set_index("codebook")


# ---------------------------------------------------------------------------------------------
# codebook geometry

def tsne(vectors: torch.Tensor, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE embedding (K, 2) of code vectors (scikit-learn, PCA init, seeded). The
    perplexity is capped below the number of vectors, as t-SNE requires."""
    from sklearn.manifold import TSNE

    x = torch.as_tensor(vectors).detach().float().cpu().numpy()
    p = min(perplexity, max((len(x) - 1) / 3, 1.0))
    return TSNE(n_components=2, perplexity=p, init="pca", random_state=seed).fit_transform(x)


def choose_k(vectors: torch.Tensor, ks: Sequence[int] = range(2, 21), seed: int = 0, min_k: int = 2) -> dict:
    """k-means on the code vectors for every k in ``ks``; the k with the highest silhouette wins.

    ``min_k``: every k in ``ks`` is scored (the whole curve is returned), but only k >= min_k may
    win — for a codebook whose silhouette is highest at k = 2 and falls from there, where two
    clusters (near-white codes against coloured ones) say nothing about parts.
    Returns ``k``, ``silhouette`` (its score), ``labels`` (K,) of that clustering, and ``scores``
    {k: silhouette} for the plot. ks that leave fewer than 2 points per cluster are skipped.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    x = torch.as_tensor(vectors).detach().float().cpu().numpy()
    scores, labels = {}, {}
    for k in ks:
        if not 2 <= k <= len(x) // 2:
            continue
        fit = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
        if len(set(fit.labels_)) < 2:
            continue
        scores[int(k)] = float(silhouette_score(x, fit.labels_))
        labels[int(k)] = fit.labels_
    allowed = [k for k in scores if k >= min_k]
    if not allowed:
        raise ValueError(f"no k >= {min_k} in {list(ks)} fits {len(x)} vectors")
    best = max(allowed, key=scores.get)
    return {"k": best, "silhouette": scores[best], "labels": labels[best], "scores": scores}


@torch.no_grad()
def code_patches(vqvae, codes: torch.Tensor | None = None, context: str = "uniform",
                 background: int | None = None, cells: int = 3, batch_size: int = 256) -> torch.Tensor:
    """The image patch each code decodes to: (len(codes), 3, cells * s, cells * s) uint8, s = the
    pixels per code cell (4 for 32 px / 8x8 codes), cropped from the centre of the decoded grid.

    ``context="uniform"`` (default): the whole grid filled with the code. This reads best: on
    the full-profile VQ-VAE each code then decodes to a clear colour and texture (skin yellow,
    a striped flag red, an outline brown), so a cluster's row shows what its codes have in common.
    ``context="background"``: the code alone at the centre of a grid of the ``background`` code
    (default: the code of a white image); closer to how codes occur, but a lone code decodes to
    a faint blob a few pixels wide — the decoder spreads it over its neighbours — which says less.
    ``codes``: which codes (default all, in order).
    """
    from .runtime import device_of
    from .sampling import decode

    vqvae.eval()
    k = vqvae.config.num_codes
    codes = torch.arange(k) if codes is None else torch.as_tensor(codes).long()
    h = w = 32 // vqvae.config.downsample
    if context == "background":
        if background is None:
            white = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
            background = int(vqvae.encode(white.to(device_of(vqvae))).flatten().mode().values)
        grids = torch.full((len(codes), h, w), background, dtype=torch.long)
    elif context == "uniform":
        grids = codes.view(-1, 1, 1).expand(-1, h, w).clone()
    else:
        raise ValueError(f"context must be 'background' or 'uniform', not {context!r}")
    ci, cj = h // 2, w // 2
    grids[:, ci, cj] = codes
    images = decode(vqvae, grids, batch_size)
    s = images.shape[-1] // w
    r = cells // 2
    top, left = (ci - r) * s, (cj - r) * s
    return images[:, :, top:top + cells * s, left:left + cells * s]


def cluster_rows(patches: torch.Tensor, labels, per_cluster: int = 12, order=None,
                 seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Patches arranged one row per cluster (up to ``per_cluster`` members each, chosen seeded;
    white fill for small clusters), and row labels, for ``viz.image_grid(images, nrow=per_cluster,
    row_labels=...)``. ``order``: patch indices ranked first within a cluster (e.g. the most used codes)."""
    labels = torch.as_tensor(np.asarray(labels)).long()
    g = torch.Generator().manual_seed(seed)
    rank = torch.empty(len(labels), dtype=torch.long)
    if order is None:
        rank[torch.randperm(len(labels), generator=g)] = torch.arange(len(labels))
    else:
        rank[torch.as_tensor(order).long()] = torch.arange(len(labels))
    blank = torch.full_like(patches[0], 255)
    rows, names = [], []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        members = members[rank[members].argsort()][:per_cluster]
        row = [patches[i] for i in members.tolist()] + [blank] * (per_cluster - len(members))
        rows += row
        names.append(f"cluster {c} ({int((labels == c).sum())})")
    return torch.stack(rows), names


# ---------------------------------------------------------------------------------------------
# memorization

@torch.no_grad()
def nearest(query: torch.Tensor, reference: torch.Tensor, batch_size: int = 1024,
            exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean nearest neighbour in ``reference`` (M, D) of every row of ``query`` (N, D):
    (distances (N,), indices (N,)). Float64 so that near-duplicates are told apart;
    ``exclude_self`` skips index i for query i (query and reference the same set)."""
    ref = reference.double().flatten(1)
    ref_sq = (ref * ref).sum(1)
    dists, idx = [], []
    for start in range(0, len(query), batch_size):
        q = query[start:start + batch_size].double().flatten(1)
        d2 = (q * q).sum(1, keepdim=True) - 2 * q @ ref.T + ref_sq
        if exclude_self:
            rows = torch.arange(len(q))
            d2[rows, rows + start] = float("inf")
        d, i = d2.clamp_min(0).min(1)
        dists.append(d.sqrt())
        idx.append(i)
    return torch.cat(dists), torch.cat(idx)


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).float() / 255


def nearest_train(images: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index into ``pool`` of the pixel-nearest image to each of ``images`` (uint8, one size): is a
    sample new, or a copy of something it trained on?"""
    return nearest(_pixels(images), _pixels(pool))[1]


def memorization(samples: torch.Tensor, train: torch.Tensor, val: torch.Tensor, *,
                 sample_features: torch.Tensor, train_features: torch.Tensor, val_features: torch.Tensor,
                 train_feature_rows: torch.Tensor | None = None, near_copy_quantile: float = 0.05) -> dict:
    """For every generated sample its nearest train image, in Inception feature space and in
    pixels, measured against the yardstick of new real emojis: the val set (emojis never seen in
    any style) and its nearest-train distances.

    Per space (``"inception"``, ``"pixel"``): ``sample_dist`` / ``sample_nn`` (nearest train
    distance and index per sample), ``val_dist``, ``threshold`` (median val-to-train distance),
    ``memorized_share`` (share of samples nearer a train image than that median: real unseen
    emojis give 0.5 by construction, so above 0.5 the samples sit closer to the train set than
    new emojis do), ``near_copy_threshold`` / ``near_copy_share`` (the same at the
    ``near_copy_quantile`` of val distances: samples closer than all but the 5% nearest new emojis).
    ``train_feature_rows``: the rows of ``train`` that ``train_features`` are of, when the features
    cover only a seeded subset of it (the FID reference of a profile with ``eval_limit``): the
    Inception space then searches that subset, pixels still every train image, and both spaces'
    ``sample_nn`` index ``train``.
    Top level: ``memorized_share`` and ``near_copy_share`` of the Inception space (the headline),
    ``*_pixel`` of pixel space, and ``order`` (samples, nearest to the train set first, Inception)
    for the samples-beside-neighbours grid.
    """
    out = {}
    for space, (s, t, v) in {"inception": (sample_features, train_features, val_features),
                             "pixel": (_pixels(samples), _pixels(train), _pixels(val))}.items():
        sd, si = nearest(s, t)
        vd, _ = nearest(v, t)
        if space == "inception" and train_feature_rows is not None:
            si = train_feature_rows[si]
        threshold = float(vd.median())
        near = float(torch.quantile(vd, near_copy_quantile))
        out[space] = {"sample_dist": sd, "sample_nn": si, "val_dist": vd, "threshold": threshold,
                      "memorized_share": float((sd < threshold).double().mean()),
                      "near_copy_threshold": near, "near_copy_share": float((sd < near).double().mean())}
    out["memorized_share"] = out["inception"]["memorized_share"]
    out["near_copy_share"] = out["inception"]["near_copy_share"]
    out["memorized_share_pixel"] = out["pixel"]["memorized_share"]
    out["near_copy_share_pixel"] = out["pixel"]["near_copy_share"]
    out["order"] = out["inception"]["sample_dist"].argsort()
    return out


def neighbour_rows(samples: torch.Tensor, train: torch.Tensor, result: dict, n: int = 12,
                   which: str = "nearest") -> tuple[list[torch.Tensor], list[str]]:
    """Rows for ``viz.compare_grid``: ``n`` samples, their nearest train image in Inception space
    and in pixels. ``which="nearest"``: the samples closest to the train set (where copies would
    show); ``"random"``: an evenly spaced pick along the distance order (the typical case)."""
    order = result["order"]
    pick = order[:n] if which == "nearest" else order[torch.linspace(0, len(order) - 1, n).round().long()]
    return ([samples[pick], train[result["inception"]["sample_nn"][pick]], train[result["pixel"]["sample_nn"][pick]]],
            ["sample", "nearest (Inception)", "nearest (pixels)"])


def memorization_table(results: dict[str, dict]):
    """A pandas table of :func:`memorization` results (``{name: result}``), one row per result and
    space: the two shares, and the median nearest-train distance of the samples beside the median
    (and 5 % quantile) of the val images' — the yardstick the shares are measured with."""
    import pandas as pd

    rows = []
    for name, mem in results.items():
        for space in ("inception", "pixel"):
            m = mem[space]
            rows.append({"samples": name, "space": space, "n": len(m["sample_dist"]),
                         "memorized_share": round(m["memorized_share"], 4),
                         "near_copy_share": round(m["near_copy_share"], 4),
                         "sample_to_train_median": round(float(m["sample_dist"].median()), 4),
                         "val_to_train_median": round(m["threshold"], 4),
                         "val_to_train_5pct": round(m["near_copy_threshold"], 4)})
    return pd.DataFrame(rows).set_index(["samples", "space"])


def best_prior(metrics: dict) -> str:
    """The prior with the lowest FID in a prior metrics file (``prior_vqvae.json``: one object per
    prior beside the flat floors); its samples and their setting are its sample set."""
    priors = {k: v for k, v in metrics.items() if isinstance(v, dict) and isinstance(v.get("fid"), (int, float))}
    if not priors:
        raise ValueError(f"no prior with an FID among {sorted(metrics)}")
    return min(priors, key=lambda k: priors[k]["fid"])


def memorization_of(samples, ds, size: int, profile) -> tuple[dict, torch.Tensor]:
    """:func:`memorization` of a :class:`helpers.artifacts.SampleSet` against the ``size`` px train
    images (in Inception space the profile's FID reference, with the features 02 / 04 cached; in
    pixels all of them) and the val images of its evaluation set; returns the result and the train
    images its indices point into."""
    from . import paths, references

    train = ds.images(size, "train")
    _, train_features = references.reference(ds, size, "train", profile.eval_limit, profile.seed)
    val, val_features = references.reference(ds, size, "val", profile.eval_limit, profile.seed)
    result = memorization(samples.images, train, val, sample_features=samples.features(paths.cache_dir()),
                          train_features=train_features, val_features=val_features,
                          train_feature_rows=references.subset(len(train), profile.eval_limit, profile.seed))
    return result, train


def metrics_summary(mem: dict, kmeans: dict | None = None, levels: dict[str, dict] | None = None) -> dict:
    """The flat numbers ``analysis.json`` holds (docs/ARCHITECTURE.md): memorization shares and thresholds,
    k-means ``k`` and ``silhouette``, and per codebook usage / perplexity / dead codes."""
    out = {k: mem[k] for k in ("memorized_share", "near_copy_share", "memorized_share_pixel", "near_copy_share_pixel")}
    out["val_to_train_median_inception"] = mem["inception"]["threshold"]
    out["val_to_train_median_pixel"] = mem["pixel"]["threshold"]
    out["n_samples"] = len(mem["order"])
    if kmeans is not None:
        out["k"], out["silhouette"] = kmeans["k"], kmeans["silhouette"]
    for name, u in (levels or {}).items():
        out[f"usage_{name}"], out[f"perplexity_{name}"] = u["usage"], u["perplexity"]
        out[f"dead_codes_{name}"] = u["dead"]
    return out


__all__ = ["usage", "usage_table", "tsne", "choose_k", "code_patches", "cluster_rows", "nearest",
           "memorization", "memorization_of", "neighbour_rows", "memorization_table", "best_prior",
           "metrics_summary", "nearest_train"]
