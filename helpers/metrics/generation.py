"""Generation metrics: FID (Heusel et al. 2017), KID (Binkowski et al. 2018) and
precision/recall (Kynkaanniemi et al. 2019) by torch-fidelity's own functions (FID also by two
exact, faster routes to the same trace term, checked against it in the tests), and density and
coverage (Naeem et al. 2020, which torch-fidelity lacks) by our own few lines, all from the
Inception features of inception.py; we only feed them features.
"""

from __future__ import annotations

import torch

from .inception import inception_features


def fid_statistics(features: torch.Tensor) -> dict:
    """{"mu", "sigma"} (numpy float64) of features, as torch-fidelity computes them. Compute it
    once for a real set that several FIDs compare against (the train set): its matrix square
    root is then also computed once (kept in the dict under "sigma_sqrt")."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.double().cpu())


def fid_from_features(f1, f2, method: str = "auto") -> float:
    """FID between two feature sets (tensors (N, 2048), or stats dicts from :func:`fid_statistics`).

    All methods compute the same number (equal within 1e-6 relative, tested); they differ in
    how they get tr sqrt(S1 S2), the one expensive term:

    ``"torch-fidelity"``: its fid_statistics_to_metric verbatim — eigenvalues of the
        non-symmetric 2048x2048 product, the slow way.
    ``"eigh"``: the symmetric R S2 R with R = S1^(1/2) has the same eigenvalues (AB and BA
        share them); R is cached in the stats dict, so repeated FIDs against one real set
        cost one symmetric eigendecomposition each, far cheaper (docs/PERFORMANCE.md,
        "Measurements behind the code").
    ``"samples"``: with S = A^T A, A the centred features / sqrt(n-1), the trace is the sum
        of singular values of A1 A2^T (n1 x n2): exact, and cheap when one set is small.
    ``"auto"``: "samples" when both are features and one set has <= 1024 images, else "eigh".
    """
    import numpy as np

    tensors = torch.is_tensor(f1) and torch.is_tensor(f2)
    if method == "auto":
        method = "samples" if tensors and min(len(f1), len(f2)) <= 1024 else "eigh"
    if method == "samples":
        if not tensors:
            raise ValueError("method='samples' needs features, not statistics")
        a1, a2 = (f.double().cpu().numpy() for f in (f1, f2))
        mu1, mu2 = a1.mean(0), a2.mean(0)
        a1 = (a1 - mu1) / np.sqrt(len(a1) - 1)
        a2 = (a2 - mu2) / np.sqrt(len(a2) - 1)
        tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
        diff = mu1 - mu2
        return float(diff.dot(diff) + (a1 * a1).sum() + (a2 * a2).sum() - 2 * tr_covmean)

    s1 = f1 if isinstance(f1, dict) else fid_statistics(f1)
    s2 = f2 if isinstance(f2, dict) else fid_statistics(f2)
    if method == "torch-fidelity":
        from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

        return float(fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID])
    if method != "eigh":
        raise ValueError(f"method must be auto, samples, eigh or torch-fidelity, not {method!r}")
    if "sigma_sqrt" not in s2 and "sigma_sqrt" in s1:
        s1, s2 = s2, s1                                   # reuse the cached root (FID is symmetric)
    if "sigma_sqrt" not in s2:
        w, v = np.linalg.eigh(s2["sigma"])
        s2["sigma_sqrt"] = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    root = s2["sigma_sqrt"]
    eig = np.linalg.eigvalsh(root @ s1["sigma"] @ root)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()    # rounding can leave tiny negatives
    diff = s1["mu"] - s2["mu"]
    return float(diff.dot(diff) + np.trace(s1["sigma"]) + np.trace(s2["sigma"]) - 2 * tr_covmean)


def kid_from_features(fake: torch.Tensor, real: torch.Tensor, subset_size: int = 1000, subsets: int = 100,
                      seed: int = 2020) -> tuple[float, float]:
    """(KID mean, std) over ``subsets`` random subsets (polynomial kernel, torch-fidelity's
    defaults); the subset size shrinks to the smaller set when the sets are small. float32
    features, as torch-fidelity's own pipeline feeds them: half the time of float64."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, len(fake), len(real))
    out = kid_features_to_metric(fake.float().cpu(), real.float().cpu(), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def precision_recall_from_features(fake: torch.Tensor, real: torch.Tensor, neighborhood: int = 3) -> tuple[float, float]:
    """(precision, recall) with k-NN manifolds (k = 3), torch-fidelity's convention: precision =
    share of fakes inside the real manifold, recall = share of reals inside the fake one.
    float32 like torch-fidelity itself (the distance matrices of 6000 images, 6000 x 6000 each,
    stay half the size of float64 ones)."""
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    out = prc_features_to_metric(fake.float().cpu(), real.float().cpu(), prc_neighborhood=neighborhood,
                                 prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])


def real_radii(real: torch.Tensor, neighborhood: int = 5, batch_size: int = 1024) -> torch.Tensor:
    """Each real feature's distance to its ``neighborhood``-th nearest other real feature (float32,
    CPU): the balls of :func:`density_coverage_from_features`, the same for every fake set compared
    with one real set."""
    if len(real) <= neighborhood:
        raise ValueError(f"density needs more than {neighborhood} real features, got {len(real)}")
    real = real.float().cpu()
    return torch.cat([torch.cdist(real[i:i + batch_size], real).kthvalue(neighborhood + 1, dim=1).values
                      for i in range(0, len(real), batch_size)])          # + 1: a real is its own nearest


def density_coverage_from_features(fake: torch.Tensor, real: torch.Tensor, neighborhood: int = 5,
                                   batch_size: int = 1024, radii: torch.Tensor | None = None) -> tuple[float, float]:
    """(density, coverage) of Naeem et al. 2020 ("Reliable Fidelity and Diversity Metrics for
    Generative Models"), as their prdc code computes them, with their k = 5. Each real feature
    gets a ball out to its k-th nearest other real feature. **Density**: how many real balls a
    fake lies in, averaged over the fakes and divided by k: about 1 for fakes distributed like the
    reals, above 1 where fakes crowd into dense real regions, and unlike precision not fooled by a
    few real outliers with huge balls. **Coverage**: the share of real balls that hold at least
    one fake (diversity where the reals are). float32, in row batches of ``batch_size``.
    ``radii``: :func:`real_radii` of ``real``, when the caller keeps them for several fake sets."""
    if len(fake) == 0:
        raise ValueError("no fake features")
    if radii is None:
        radii = real_radii(real, neighborhood, batch_size)
    real, fake = real.float().cpu(), fake.float().cpu()
    inside, nearest = 0, torch.full((len(real),), float("inf"))
    for i in range(0, len(fake), batch_size):
        d = torch.cdist(fake[i:i + batch_size], real)
        inside += int((d < radii).sum())
        nearest = torch.minimum(nearest, d.min(0).values)
    return inside / (neighborhood * len(fake)), float((nearest < radii).float().mean())


def generation_metrics(fake: torch.Tensor, real, *, real_stats: dict | None = None,
                       kid_subset_size: int = 1000, kid_subsets: int = 100, seed: int = 2020,
                       **feature_kwargs) -> dict:
    """FID, KID (mean, std), precision/recall and density/coverage of generated images against real ones.

    ``fake``: uint8 images (N,3,H,W), or their features (N, 2048) if already extracted.
    ``real``: features (N, 2048) — e.g. from :func:`cached_features` — or a stats dict from
        :func:`fid_statistics`, in which case only FID can be computed (the rest are None).
    ``real_stats``: ``fid_statistics(real)``, computed once by the caller when several image
        sets are compared with the same real set (it caches its matrix root inside, and the real
        features' density radii).
    The fakes go through the network once; every metric is computed from those features.
    """
    fake_features = (inception_features(fake, **feature_kwargs)
                     if fake.dtype == torch.uint8 else fake.double())
    reference = real_stats if real_stats is not None else real
    out = {"fid": fid_from_features(fake_features, reference), "kid": None, "kid_std": None,
           "precision": None, "recall": None, "density": None, "coverage": None, "n_fake": len(fake_features)}
    if not isinstance(real, dict):
        out["kid"], out["kid_std"] = kid_from_features(fake_features, real, kid_subset_size, kid_subsets, seed)
        out["precision"], out["recall"] = precision_recall_from_features(fake_features, real)
        radii = None
        if real_stats is not None:   # kept beside the matrix root, for the next set against this real one
            if "density_radii" not in real_stats:
                real_stats["density_radii"] = real_radii(real)
            radii = real_stats["density_radii"]
        out["density"], out["coverage"] = density_coverage_from_features(fake_features, real, radii=radii)
        out["n_real"] = len(real)
    return out
