"""The report's creative extensions, each with a baseline: latent interpolation, inpainting
(the report's autoencoder method and a prior-based one) and super-resolution 64 -> 128.

Everything works on whole batches: one decoder call for all blends of an interpolation, one
sampler run (batch = images x samples) for the prior's inpainting, one metrics call per set.
Images go in and come out as uint8 (N, 3, H, W), as the dataset stores them.

05 calls the stage functions at the end, one per notebook section, as 02 and 04 call theirs:
:func:`inpaint_splits`, then :func:`fit_superres` -> :func:`score_superres` ->
:func:`superres_samples`, then :func:`save_extensions`. A dataset without 128 px images (a
64 px vendor, a folder of small images) skips super-resolution with the reason said, and
``extensions.json`` records it as ``superres.not_measured``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .runtime import device_of
from .tensors import to_uint8
from .metrics import PSNR_CAP_DB, reconstruction_metrics_batched, reconstruction_per_image


def _on(model, x: torch.Tensor) -> torch.Tensor:
    """``x`` on ``model``'s device: the one place this module moves tensors to a model; every
    function here returns its images, codes and metrics on the CPU."""
    return x.to(device_of(model))


# ---------------------------------------------------------------------------------------------
# latent interpolation (VQ-VAE, 8x8 codes)


@torch.no_grad()
def latents(vqvae, images: torch.Tensor, source: str = "codebook") -> torch.Tensor:
    """The (B, D, h, w) latents of uint8 images: ``"codebook"`` = the code vectors E of their
    code grids (what the decoder sees), ``"encoder"`` = the encoder output before quantization."""
    vqvae.eval()
    images = _on(vqvae, images)
    if source == "codebook":
        return vqvae.quantizer.embed(vqvae.encode(images)).float().cpu()
    if source == "encoder":
        return vqvae.encoder(vqvae._prepare(images)).float().cpu()
    raise ValueError(f"source must be 'codebook' or 'encoder', not {source!r}")


@torch.no_grad()
def decode_latents(vqvae, z: torch.Tensor, snap: bool = False) -> torch.Tensor:
    """Latents (B, D, h, w) -> uint8 images. ``snap``: replace each vector by its nearest code
    first (what a VQ-VAE can actually represent); otherwise the decoder gets the blend as is."""
    vqvae.eval()
    z = _on(vqvae, z)
    if snap:
        z = vqvae.quantizer.embed(vqvae.quantizer.quantize(z))
    w = vqvae.decoder.net[0].weight
    return to_uint8(vqvae.decoder(z.to(w.dtype)).clamp(-1, 1)).cpu()


def interpolate(vqvae, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 12,
                source: str = "codebook") -> dict[str, torch.Tensor]:
    """Rows of ``steps`` images from A to B, for ``viz.compare_grid(list(rows.values()), list(rows))``.

    With a in ``linspace(0, 1, steps)`` and E_A, E_B the latents of the two images (``source``):
    ``"latent blend"``: (1 - a) E_A + a E_B decoded directly;
    ``"snapped to codes"``: the same blend, each vector snapped to its nearest code, decoded;
    ``"pixel cross-fade"``: (1 - a) A + a B in pixels, the baseline.
    The two latent rows are decoded in one batch.
    """
    alphas = torch.linspace(0, 1, steps)
    z = latents(vqvae, torch.stack([image_a, image_b]), source)
    a = alphas.view(-1, 1, 1, 1)
    blends = (1 - a) * z[0:1] + a * z[1:2]                       # (steps, D, h, w)
    snapped = vqvae.quantizer.embed(vqvae.quantizer.quantize(_on(vqvae, blends))).cpu()
    decoded, snapped = decode_latents(vqvae, torch.cat([blends, snapped])).split(steps)
    fade = ((1 - a) * image_a.float() + a * image_b.float()).round().clamp(0, 255).to(torch.uint8)
    return {"latent blend": decoded, "snapped to codes": snapped, "pixel cross-fade": fade}


def blend_at(vqvae, image_a: torch.Tensor, image_b: torch.Tensor, alpha: float,
             source: str = "codebook") -> dict[str, torch.Tensor]:
    """One blend at ``alpha`` (the widget's slider): the three rows of :func:`interpolate` at that
    a, each a (1, 3, H, W) uint8 image, with A and B for reference."""
    z = latents(vqvae, torch.stack([image_a, image_b]), source)
    blend = (1 - alpha) * z[0:1] + alpha * z[1:2]
    fade = ((1 - alpha) * image_a.float() + alpha * image_b.float()).round().clamp(0, 255).to(torch.uint8)
    return {"A": image_a[None], "latent blend": decode_latents(vqvae, blend),
            "snapped to codes": decode_latents(vqvae, blend, snap=True), "pixel cross-fade": fade[None],
            "B": image_b[None]}


# ---------------------------------------------------------------------------------------------
# inpainting

FILL = 255   # the masked area is filled with white: the emojis' background, so a mask that falls
             # on background is already "right", and one on the emoji reads as a hole


def mask_at(tops, lefts, size: int = 32, mask: int = 8) -> torch.Tensor:
    """(N, 1, size, size) bool masks, True inside the ``mask`` x ``mask`` square at (top, left)."""
    tops, lefts = torch.as_tensor(tops).long().view(-1), torch.as_tensor(lefts).long().view(-1)
    r = torch.arange(size)
    rows = (r >= tops[:, None]) & (r < tops[:, None] + mask)        # (N, size)
    cols = (r >= lefts[:, None]) & (r < lefts[:, None] + mask)
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def random_masks(n: int, size: int = 32, mask: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` seeded random square masks (N, 1, size, size) bool, anywhere fully inside the image."""
    g = torch.Generator().manual_seed(seed)
    tops, lefts = torch.randint(0, size - mask + 1, (2, n), generator=g)
    return mask_at(tops, lefts, size, mask)


def apply_mask(images: torch.Tensor, masks: torch.Tensor, fill: int = FILL) -> torch.Tensor:
    """uint8 images with the masked pixels set to ``fill`` (what the models are shown)."""
    return torch.where(masks, torch.full_like(images, fill), images)


def paste(images: torch.Tensor, filled: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Known pixels from ``images``, masked ones from ``filled``: an inpainting never changes
    what was visible."""
    return torch.where(masks, filled, images)


def autoencoder_inpaint(vqvae, images: torch.Tensor, masks: torch.Tensor, fill: int = FILL,
                        batch_size: int = 512) -> torch.Tensor:
    """The report's method: the masked image (filled with ``fill``) through the VQ-VAE, its
    reconstruction pasted into the mask."""
    from .autoencode import reconstruct

    recon = reconstruct(vqvae, apply_mask(images, masks, fill), batch_size)
    return paste(images, recon, masks)


def code_mask(masks: torch.Tensor, grid: int = 8) -> torch.Tensor:
    """(N, grid, grid) bool: the code cells a pixel mask touches (any pixel of the cell masked)."""
    cell = masks.shape[-1] // grid
    return F.max_pool2d(masks.float(), cell)[:, 0] > 0


class Inpainting(NamedTuple):
    samples: torch.Tensor        # (N, S, 3, H, W) uint8, each sample pasted outside the mask
    best: torch.Tensor           # (N, 3, H, W) uint8, the sample chosen by ``select``
    best_index: torch.Tensor     # (N,) which sample that is
    nll: torch.Tensor            # (N, S) prior NLL (nats) of each completed code grid (temperature 1)
    visible_mse: torch.Tensor    # (N, S) MSE of the decoded sample against the visible pixels near the mask
    codes: torch.Tensor          # (N, S, h, w) the completed code grids


@torch.no_grad()
def prior_inpaint(prior, vqvae, images: torch.Tensor, masks: torch.Tensor, *, n_samples: int = 8,
                  labels=None, temperature: float = 1.0, top_k: int | None = None, select: str = "nll",
                  margin: int = 0, ring: int = 4, fill: int = FILL, seed: int = 0, batch_size: int = 512,
                  progress: bool = True) -> Inpainting:
    """Inpainting by the prior: the codes the mask touches are resampled given the visible ones.

    1. The *masked* image (filled with ``fill``) is encoded, so no hidden pixel reaches any code.
    2. The code cells the mask touches (grown by ``margin`` cells: the codes beside the mask also
       saw the fill through the encoder's receptive field) are drawn by ``prior`` in raster
       order, every other code kept (``sampling.sample_codes(known_codes=..., known_mask=...)``;
       all images x ``n_samples`` in one batch of the sampler, chunked by ``batch_size``).
    3. Each completed grid is decoded and pasted outside the mask.

    The best sample is chosen without the hidden pixels: ``select="nll"`` takes the completed
    grid the prior finds most likely as a whole (so the visible codes after the mask in raster
    order, which the sampler could not look ahead to, also vote), ``select="visible"`` the one
    whose decoded image best matches the visible pixels in a ``ring``-pixel band around the mask.
    ``labels``: categories for a category-conditional prior (None: unconditional).
    """
    from .sampling import decode, sample_codes

    n, s = len(images), n_samples
    masked = apply_mask(images, masks, fill)
    vqvae.eval()
    codes = torch.cat([vqvae.encode(_on(vqvae, masked[i:i + batch_size])).cpu() for i in range(0, n, batch_size)])
    h, w = codes.shape[-2:]
    hidden = code_mask(masks, h)
    if margin > 0:
        hidden = F.max_pool2d(hidden[:, None].float(), 2 * margin + 1, stride=1, padding=margin)[:, 0] > 0
    rep = lambda t: t.repeat_interleave(s, 0)                       # noqa: E731  image-major order
    lab = None if labels is None else rep(torch.as_tensor(labels).long().expand(n))
    generator = torch.Generator().manual_seed(seed)
    completed, nll = sample_codes(prior, n * s, (h, w), labels=lab, temperature=temperature, top_k=top_k,
                                  batch_size=batch_size, generator=generator, progress=progress,
                                  known_codes=rep(codes), known_mask=~rep(hidden), return_nll=True)
    completed, nll = completed.cpu(), nll.cpu().view(n, s)

    band = (F.max_pool2d(masks.float(), 2 * ring + 1, stride=1, padding=ring) > 0) & ~masks
    samples, visible_mse = [], []
    for i in range(0, n * s, batch_size):                           # chunks of (image, sample) rows
        rows = torch.arange(i, min(i + batch_size, n * s)) // s      # the image of each row
        decoded = decode(vqvae, completed[i:i + batch_size], batch_size)
        samples.append(paste(images[rows], decoded, masks[rows]))
        err = (decoded.float() - images[rows].float()).div(255).pow(2).mean(1, keepdim=True)
        b = band[rows].float()
        visible_mse.append((err * b).flatten(1).sum(1) / b.flatten(1).sum(1).clamp_min(1))
    samples = torch.cat(samples).view(n, s, *images.shape[1:])
    visible_mse = torch.cat(visible_mse).view(n, s)
    if select == "nll":
        best_index = nll.argmin(1)
    elif select == "visible":
        best_index = visible_mse.argmin(1)
    else:
        raise ValueError(f"select must be 'nll' or 'visible', not {select!r}")
    best = samples[torch.arange(n), best_index]
    return Inpainting(samples, best, best_index, nll, visible_mse, completed.view(n, s, h, w))


def masked_metrics(images: torch.Tensor, results: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image, on the masked region alone: ``mse_masked`` and ``psnr_masked`` over the masked
    pixels; ``ssim_masked`` = the SSIM map (11x11 Gaussian window, computed on the whole image
    as for the whole-image SSIM) averaged over the masked pixels — an 8x8 crop is smaller than
    the window, so the windows reach up to 5 pixels into the (identical) visible context."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = images.float() / 255, results.float() / 255
    m = masks.expand_as(x).float()
    area = m.flatten(1).sum(1).clamp_min(1)
    mse = ((x - y).pow(2) * m).flatten(1).sum(1) / area
    _, ssim_map = structural_similarity_index_measure(y, x, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                      reduction="none", data_range=1.0, return_full_image=True)
    return {"mse_masked": mse, "psnr_masked": 10 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_CAP_DB / 10))),
            "ssim_masked": (ssim_map * m).flatten(1).sum(1) / area}


def inpainting_metrics(images: torch.Tensor, results: torch.Tensor, masks: torch.Tensor,
                       batch_size: int = 512) -> dict[str, float]:
    """Mean over images of MSE/PSNR/SSIM on the whole image and (``_masked``) on the masked region
    (see :func:`masked_metrics`)."""
    out = reconstruction_metrics_batched(images, results, batch_size)
    parts: dict[str, list] = {}
    for i in range(0, len(images), batch_size):
        for k, v in masked_metrics(images[i:i + batch_size], results[i:i + batch_size],
                                   masks[i:i + batch_size]).items():
            parts.setdefault(k, []).append(v)
    return {**out, **{k: float(torch.cat(v).mean()) for k, v in parts.items()}}


def sample_mean_metrics(images: torch.Tensor, samples: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Metrics of every sample (N, S, ...) averaged over samples and images: what one random
    sample of the prior scores on average (not the metrics of the pixel-mean image, which is a blur)."""
    n, s = samples.shape[:2]
    rep = lambda t: t.repeat_interleave(s, 0)                       # noqa: E731
    return inpainting_metrics(rep(images), samples.flatten(0, 1), rep(masks))


def evaluate_inpainting(vqvae, prior, images: torch.Tensor, masks: torch.Tensor, *, labels=None,
                        n_samples: int = 8, select: str = "nll", margin: int = 0, temperature: float = 1.0,
                        top_k: int | None = None, fill: int = FILL, seed: int = 0, batch_size: int = 512,
                        progress: bool = True) -> tuple[dict, dict]:
    """Both methods on one image set: ({"autoencoder", "prior", "prior_mean"} -> metrics of
    :func:`inpainting_metrics`, {"autoencoder": images, "prior": Inpainting}). ``prior`` is the
    best sample per image (chosen by ``select``, never by the hidden pixels), ``prior_mean`` the
    average over samples."""
    ae = autoencoder_inpaint(vqvae, images, masks, fill, batch_size)
    pr = prior_inpaint(prior, vqvae, images, masks, n_samples=n_samples, labels=labels, select=select,
                       margin=margin, temperature=temperature, top_k=top_k, fill=fill, seed=seed,
                       batch_size=batch_size, progress=progress)
    metrics = {"autoencoder": inpainting_metrics(images, ae, masks),
               "prior": inpainting_metrics(images, pr.best, masks),
               "prior_mean": sample_mean_metrics(images, pr.samples, masks)}
    return metrics, {"autoencoder": ae, "prior": pr}


def by_method(per_split: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{split: {method: {metric: v}}} -> {method: {"<split>_<metric>": v}}: the shape of
    ``extensions.json`` (docs/ARCHITECTURE.md), e.g. ``by_method({"train": m_train, "val": m_val})``."""
    out: dict[str, dict[str, float]] = {}
    for split, methods in per_split.items():
        for method, values in methods.items():
            out.setdefault(method, {}).update({f"{split}_{k}": v for k, v in values.items()})
    return out


# ---------------------------------------------------------------------------------------------
# super-resolution 64 -> 128

def upsample(images: torch.Tensor, size: int = 128, method: str = "bicubic") -> torch.Tensor:
    """Baseline upscaling of uint8 images with PIL (``"bicubic"``, ``"lanczos"`` or ``"nearest"``),
    the filters image editors use; uint8 out."""
    from PIL import Image

    resample = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS, "nearest": Image.NEAREST}[method]
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    out = [np.asarray(Image.fromarray(a).resize((size, size), resample)) for a in arrays]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous() if out else \
        torch.empty(0, 3, size, size, dtype=torch.uint8)


@torch.no_grad()
def superres_upscale(model, vqvae2, images64: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 64x64 images -> uint8 128x128 through the frozen VQ-VAE-2 codes and the SR decoder."""
    model.eval()
    vqvae2.eval()
    parts = []
    for i in range(0, len(images64), batch_size):   # the two models may sit on different devices
        low = images64[i:i + batch_size]
        codes = vqvae2.encode(_on(vqvae2, low))
        parts.append(to_uint8(model(*(_on(model, c) for c in codes), low=_on(model, low))).cpu())
    return torch.cat(parts) if parts else torch.empty(0, 3, 128, 128, dtype=torch.uint8)


def evaluate_superres(model, vqvae2, images64: torch.Tensor, images128: torch.Tensor,
                      split: str = "val") -> tuple[dict, dict]:
    """({"decoder", "bicubic", "lanczos"} -> {"<split>_mse", "<split>_psnr", "<split>_ssim"},
    {method: uint8 128x128 images}) against the genuine 128 px renderings ``images128``."""
    size = images128.shape[-1]
    outputs = {"decoder": superres_upscale(model, vqvae2, images64),
               "bicubic": upsample(images64, size, "bicubic"),
               "lanczos": upsample(images64, size, "lanczos")}
    metrics = {name: {f"{split}_{k}": v for k, v in reconstruction_metrics_batched(images128, out).items()}
               for name, out in outputs.items()}
    return metrics, outputs


def per_image_psnr(images: torch.Tensor, results: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of each image pair, e.g. to pick the examples a figure shows."""
    return reconstruction_per_image(images, results)["psnr"]


# ---------------------------------------------------------------------------------------------
# 05's stages


@dataclass
class InpaintingRun:
    """What :func:`inpaint_splits` made: the metrics of every method per split (the shape of
    ``extensions.json``'s ``inpainting``), the val images with their masks and what each method
    made of them, and the protocol of the run."""

    metrics: dict
    images: torch.Tensor
    masks: torch.Tensor
    outputs: dict
    protocol: dict


def inpaint_splits(vqvae, prior, ds, labels: torch.Tensor, *, profile, prior_name: str, n_samples: int,
                   select: str, train_subset: int) -> InpaintingRun:
    """Both inpainting methods (:func:`evaluate_inpainting`) on every val image and a seeded
    ``train_subset`` of the train images (the profile's ``eval_limit`` caps both), one seeded
    random 8x8 hole per image. ``labels``: every image's class, as the prior is conditioned."""
    from . import references
    from .data.split import SPLIT_RULES

    val, train = ds.images(32, "val"), ds.images(32, "train")
    keep = references.subset(len(val), profile.eval_limit, profile.seed)
    sub = references.subset(len(train), min(train_subset, profile.eval_limit or train_subset), profile.seed + 1)

    def run(images, rows, seed):
        masks = random_masks(len(images), seed=seed)
        return evaluate_inpainting(vqvae, prior, images, masks, labels=labels[rows], n_samples=n_samples,
                                   select=select, seed=seed) + (masks,)

    m_val, out_val, masks = run(val[keep], ds.val_idx[keep], profile.seed)
    m_train, _, _ = run(train[sub], ds.train_idx[sub], profile.seed + 1)
    protocol = {"split": SPLIT_RULES[ds.split], "image_size": 32, "mask": "8x8, seeded, white fill",
                "n_val": len(keep), "n_train": len(sub), "prior": prior_name, "samples": n_samples,
                "select": select}
    return InpaintingRun(by_method({"train": m_train, "val": m_val}), val[keep], masks, out_val, protocol)


def superres_skipped(ds) -> str | None:
    """Why super-resolution cannot run on ``ds`` (it learns and is measured against genuine 128 px
    renderings, and a dataset of 64 px PNGs or small images has none), or None when it can."""
    n_train, n_val = len(ds.superres_rows("train")), len(ds.superres_rows("val"))
    if n_train == 0 and n_val == 0:
        return "no 128 px images"
    if n_train == 0 or n_val == 0:
        return f"no 128 px images in the {'train' if n_train == 0 else 'val'} split"
    return None


@dataclass
class SuperResFit:
    """What :func:`fit_superres` made: the decoder and its trainer, the val pairs with their codes,
    the train pair count; or, with ``skipped`` set, the reason nothing was trained."""

    model: torch.nn.Module | None = None
    trainer: object = None
    val: tuple = ()               # (codes, ..., 64 px, 128 px) of the val pairs
    n_train: int = 0
    skipped: str | None = None


def fit_superres(vqvae2, ds, grids, config, *, profile) -> SuperResFit:
    """Train (or resume, or load) the super-resolution decoder of ``vqvae2`` on the dataset's
    genuine (64 px, 128 px) pairs, reading their codes from ``grids`` (03's, so no image is
    encoded again); ``config``: its TrainConfig. Says why and returns a skipped fit when the
    dataset has no 128 px pairs to train or measure on (:func:`superres_skipped`)."""
    from . import paths
    from .models.superres import SuperRes
    from .train import Trainer

    reason = superres_skipped(ds)
    if reason is not None:
        print(f"super-resolution skipped: this dataset has {reason}, and the decoder learns to draw, "
              "and is measured against, genuine 128 px renderings (00 makes them only from large "
              "enough sources: SVGs, 256 px renders)")
        return SuperResFit(skipped=reason)
    (x64_tr, x128_tr), (x64_va, x128_va) = ds.superres_pairs("train"), ds.superres_pairs("val")
    codes_tr, codes_va = grids.of_rows(ds.superres_rows("train")), grids.of_rows(ds.superres_rows("val"))
    trainer = Trainer(SuperRes.from_vqvae2(vqvae2), (*codes_tr, x64_tr, x128_tr), (*codes_va, x64_va, x128_va),
                      config, paths.checkpoint_path(profile.name, "superres"), data_fingerprint=ds.fingerprint,
                      extra={"image_size": 128})
    model = trainer.run().eval()
    print(f"{len(x64_tr)} train / {len(x64_va)} val pairs; {trainer.step} steps ({trainer.epoch} epochs), "
          f"{trainer.seconds / 60:.1f} min")
    return SuperResFit(model, trainer, (*codes_va, x64_va, x128_va), len(x64_tr))


@dataclass
class SuperResScores:
    """What :func:`score_superres` measured: {method: metrics} on the val pairs (or, when skipped,
    ``{"not_measured": reason}``), the 64 px and genuine 128 px images and each method's output."""

    metrics: dict
    images64: torch.Tensor | None = None
    images128: torch.Tensor | None = None
    outputs: dict = field(default_factory=dict)
    n_val: int = 0


def score_superres(fit: SuperResFit, vqvae2, *, profile) -> SuperResScores:
    """The decoder against bicubic and Lanczos upscaling on the val pairs (the profile's seeded
    ``eval_limit`` of them): :func:`evaluate_superres`."""
    from . import references

    if fit.skipped is not None:
        print(f"super-resolution not measured: {fit.skipped}")
        return SuperResScores({"not_measured": fit.skipped})
    x64, x128 = fit.val[-2:]
    keep = references.subset(len(x64), profile.eval_limit, profile.seed)   # all in full
    metrics, outputs = evaluate_superres(fit.model, vqvae2, x64[keep], x128[keep])
    return SuperResScores(metrics, x64[keep], x128[keep], outputs, len(keep))


def superres_samples(fit: SuperResFit, top_prior, bottom_prior, vqvae2, n: int, *, seed: int):
    """``n`` samples of a VQ-VAE-2 prior pair (seeded) at 64 px and through the decoder at 128 px
    (the decoded sample stands in for a 64 px image); None when super-resolution was skipped."""
    from .sampling import sample_hierarchical

    if fit.skipped is not None:
        print(f"no 128 px samples: super-resolution was skipped ({fit.skipped})")
        return None
    s = sample_hierarchical(top_prior, bottom_prior, n, generator=torch.Generator().manual_seed(seed),
                            vqvae2=vqvae2, progress=False)
    return s.images, superres_upscale(fit.model, vqvae2, s.images)


def save_extensions(inpainting: InpaintingRun, superres: SuperResScores, fit: SuperResFit, ds, *, profile):
    """Write ``metrics/extensions.json``: the inpainting and super-resolution metrics with a
    protocol for each; a skipped super-resolution is recorded as ``superres.not_measured``."""
    from .data.split import SPLIT_RULES
    from .results import save_metrics

    superres_protocol = {"split": f"{SPLIT_RULES[ds.split]} (the images with a genuine 128 px rendering)",
                         "image_size": 128, "n_train": fit.n_train, "n_val": superres.n_val,
                         "train_seconds": fit.trainer.seconds if fit.trainer is not None else 0.0}
    protocol = {"inpainting": inpainting.protocol, "superres": superres_protocol, "seed": profile.seed,
                "profile": profile.name}
    return save_metrics(profile.name, "extensions", {"inpainting": inpainting.metrics,
                                                     "superres": superres.metrics}, protocol)


__all__ = ["latents", "decode_latents", "interpolate", "blend_at", "FILL", "mask_at", "random_masks",
           "apply_mask", "paste", "autoencoder_inpaint", "code_mask", "Inpainting", "prior_inpaint",
           "masked_metrics", "inpainting_metrics", "sample_mean_metrics", "evaluate_inpainting", "by_method",
           "upsample", "superres_upscale", "evaluate_superres", "per_image_psnr", "InpaintingRun", "inpaint_splits",
           "superres_skipped", "SuperResFit", "fit_superres", "SuperResScores", "score_superres",
           "superres_samples", "save_extensions"]
