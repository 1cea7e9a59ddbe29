"""Autoregressive sampling of code grids from a prior, and decoding them through a VQ-VAE
(one level) or a VQ-VAE-2 (top codes, then bottom codes given the top: :func:`sample_hierarchical`).

A prior maps codes (B, H, W) -> logits (B, K, H, W) with the logits at (i, j) depending only
on codes before (i, j) in raster order. Sampling fills the grid one position at a time.

Three ways to get the logits at (i, j), fastest first; ``sample_codes`` picks the best the
prior supports (``method="auto"``):

- "incremental": priors with ``start_sampling(batch, shape, labels, cond)`` (every raster prior here)
  cache every layer's activations and compute only position (i, j) per step — one forward
  pass worth of work per grid instead of one per position.
- "crop": priors with ``supports_row_crop = True`` depend at row i on input rows <= i only,
  so the network runs on the rows sampled so far (about half the work on an 8x8 grid).
- "naive": re-run the prior on the whole grid at every position (:func:`sample_codes_naive`,
  the reference the others are tested against).

All three compute the same function and draw their random numbers in the same order (one
multinomial draw per batch and position), so the same generator seed gives the same samples
(the incremental path sums in another order, so its logits agree to float rounding, ~1e-6).

A masked prior (helpers/models/maskgit.py, ``masked = True``) has no reading order: its grids are
drawn in a few rounds instead, each fixing the codes the prior is surest of given those fixed
before (:func:`_unmask`); temperature, top-k, guidance, seeds and known codes mean what they mean
for the raster priors, and no NLL comes with its samples.

Guidance (classifier-free, as in Ho & Salimans 2022): a prior trained with label dropout also
knows p(code | no category). With ``guidance`` w != 1 and categories given, every grid is run
twice in one batch, with its category and with "no category", and the codes are drawn from
``uncond + w * (cond - uncond)`` logits: w > 1 leans each sample toward what marks its category.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .artifacts import SamplingSetting
from .runtime import device_of
from .tensors import to_uint8


def _filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / max(temperature, 1e-8)
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, generator) -> torch.Tensor:
    """One code per row of ``logits`` (B, K)."""
    if temperature == 0:   # greedy
        return logits.argmax(-1)
    probs = F.softmax(_filter_logits(logits, temperature, top_k), dim=-1)
    if generator is not None and generator.device != probs.device:
        # a CPU generator (what callers seed) cannot draw on a GPU: draw on its device instead
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _labels_for(labels, n: int, device) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = torch.as_tensor(labels, device=device).long()
    return labels.expand(n).clone() if labels.ndim == 0 else labels


def _guided_labels(prior, labels, guidance: float) -> torch.Tensor | None:
    """The "no label" row to contrast with when ``guidance`` applies, else None: w = 1, no labels
    given, or an unconditional prior (as labels, guidance is then ignored). For (n, 2) labels
    (category and style) both columns are "none": guidance then weighs both."""
    if guidance == 1.0 or labels is None:
        return None
    config = getattr(prior, "config", None)
    num_classes = getattr(config, "num_classes", 0)
    if num_classes <= 0:
        return None
    null = [num_classes] if labels.ndim == 1 else [num_classes, getattr(config, "num_styles", 0)]
    return torch.tensor(null, dtype=torch.long, device=labels.device)


METHODS = ("auto", "incremental", "crop", "naive")


def _pick_method(prior, method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if getattr(prior, "masked", False):   # no reading order: drawn in rounds (_unmask)
        if method != "auto":
            raise ValueError(f"a masked prior is drawn in rounds, not by the raster method {method!r}")
        return "rounds"
    if method == "auto":
        if hasattr(prior, "start_sampling"):
            return "incremental"
        return "crop" if getattr(prior, "supports_row_crop", False) else "naive"
    return method


# ---- the sampler: a loop over positions, and the layers over it -----------------------------------
# ``draw(logits, i, j) -> codes (n,)`` turns the prior's logits at (i, j) into the codes there;
# guidance, inpainting and the NLL each wrap it, so the loop itself knows none of them.

def _logits_at(prior, method: str, grids: torch.Tensor, labels, cond):
    """(i, j) -> the prior's logits (m, K) at (i, j) of ``grids`` (m, H, W), whose codes before
    (i, j) are filled in: from its incremental evaluator, or a forward on the rows so far
    ("crop") or on the whole grid ("naive")."""
    if method == "incremental":
        state = prior.start_sampling(len(grids), grids.shape[1:], labels, cond)
        return lambda i, j: state.step(grids, i, j)

    def at(i: int, j: int) -> torch.Tensor:
        rows = i + 1 if method == "crop" else grids.shape[1]
        return prior(grids[:, :rows], labels, None if cond is None else cond[:, :, :rows])[:, :, i, j]
    return at


def _fill(grids: torch.Tensor, logits_at, draw, bar) -> None:
    """The sampler: every position of ``grids`` in raster order gets the codes ``draw`` makes of the
    logits there. Under guidance ``grids`` holds each grid twice and a draw fills both copies."""
    H, W = grids.shape[1:]
    for i in range(H):
        for j in range(W):
            drawn = draw(logits_at(i, j), i, j)
            grids.unflatten(0, (-1, len(drawn)))[:, :, i, j] = drawn
            bar.update(1)


def _drawing(temperature: float, top_k: int | None, generator):
    """The plain draw: one code per row of the logits, at ``temperature`` within the ``top_k``."""
    return lambda logits, i, j: _draw(logits, temperature, top_k, generator)


def _guided(draw, guidance: float):
    """Classifier-free guidance over logits whose first half is each grid with its labels and whose
    second half is the same grids with none: the draw sees uncond + w * (cond - uncond)."""
    def guided(logits, i, j):
        given, free = logits.float().chunk(2)
        return draw(free + guidance * (given - free), i, j)
    return guided


def _keeping(draw, known_codes: torch.Tensor, known_mask: torch.Tensor):
    """Inpainting: where ``known_mask`` is set the known code replaces the draw, which is still made,
    so the random stream stays that of unconstrained sampling."""
    def keeping(logits, i, j):
        return torch.where(known_mask[:, i, j], known_codes[:, i, j], draw(logits, i, j))
    return keeping


def _scoring(draw, nll: torch.Tensor):
    """Adds each grid's -log p of the code it gets to ``nll``, under the model's own logits (the
    first rows, those with the labels: temperature 1, no top-k, no guidance)."""
    def scoring(logits, i, j):
        drawn = draw(logits, i, j)
        nll.sub_(F.log_softmax(logits[:len(drawn)].float(), -1).gather(1, drawn[:, None])[:, 0])
        return drawn
    return scoring


def _unmask(prior, grids: torch.Tensor, labels, null, guidance: float, draw_logits, generator,
            known_codes=None, known_mask=None, bar=None) -> None:
    """MaskGIT's sampler (Chang et al. 2022) for a masked prior (helpers/models/maskgit.py): fills
    ``grids`` (n, H, W) in ``prior.config.rounds`` rounds. Every round runs the prior on the grid with
    the codes not yet fixed masked, draws a code at every masked position (``draw_logits``: logits
    (m, K) -> codes (m,), temperature and top-k as in raster sampling; under guidance, from
    ``uncond + w * (cond - uncond)``), and fixes those it is surest of: after round r, the share
    ``mask_share((r + 1) / rounds)`` of the codes to draw stays masked, the least confident (the
    log-probability of the drawn code plus Gumbel noise that falls to 0 by the last round). Known
    codes (inpainting) are fixed from the start and never drawn."""
    from .models.maskgit import mask_share

    n, H, W = grids.shape
    L, K, rounds = H * W, prior.config.num_codes, prior.config.rounds
    masked = torch.ones(n, L, dtype=torch.bool, device=grids.device)
    codes = torch.full((n, L), prior.mask_code, dtype=torch.long, device=grids.device)
    if known_mask is not None:
        masked = ~known_mask.flatten(1)
        codes = torch.where(masked, codes, known_codes.flatten(1))
    to_draw = masked.sum(1)
    for r in range(rounds):
        inputs, lab = codes.view(n, H, W), labels
        if null is not None:   # each grid twice in one batch: with its labels and with none
            inputs, lab = inputs.repeat(2, 1, 1), torch.cat([labels, null.expand_as(labels)])
        logits = prior(inputs, lab).float().permute(0, 2, 3, 1).reshape(-1, L, K)
        if null is not None:
            given, free = logits.chunk(2)
            logits = free + guidance * (given - free)
        drawn, log_p = draw_logits(logits.reshape(-1, K))
        drawn, log_p = drawn.view(n, L), log_p.view(n, L)
        noise = prior.config.choice_noise * (1 - (r + 1) / rounds)
        if noise > 0:
            u = torch.rand(n, L, generator=generator).clamp(1e-12, 1 - 1e-7).to(grids.device)
            log_p = log_p + noise * -torch.log(-torch.log(u))
        confidence = log_p.masked_fill(~masked, float("inf"))   # fixed codes are never masked again
        codes = torch.where(masked, drawn, codes)
        stay = (to_draw * mask_share(torch.tensor((r + 1) / rounds))).floor().long().clamp(min=0)
        stay = torch.minimum(stay, (masked.sum(1) - 1).clamp(min=0))   # every round fixes at least one
        masked = confidence.argsort(1).argsort(1) < stay[:, None]
        codes = codes.masked_fill(masked, prior.mask_code)
        if bar is not None:
            bar.update(1)
    grids.copy_(codes.view(n, H, W))


def _drawing_all(temperature: float, top_k: int | None, generator):
    """The masked sampler's draw: codes (m,) from logits (m, K), and the log-probability of each
    under the distribution drawn from."""
    def draw(logits):
        drawn = _draw(logits, temperature, top_k, generator)
        scaled = _filter_logits(logits, max(temperature, 1e-8), top_k)
        return drawn, F.log_softmax(scaled, -1).gather(1, drawn[:, None])[:, 0]
    return draw


@contextmanager
def _evaluating(prior):
    """``prior`` in eval mode (BatchNorm on its running statistics, no dropout), its mode restored after."""
    was_training = prior.training
    prior.eval()
    try:
        yield
    finally:
        prior.train(was_training)


@torch.no_grad()   # not inference_mode: the codes may feed autograd later
def sample_codes(prior, n: int, shape=(8, 8), *, labels=None, temperature: float = 1.0,
                 top_k: int | None = None, batch_size: int = 256, generator: torch.Generator | None = None,
                 cond: torch.Tensor | None = None, progress: bool = True,
                 method: str = "auto", known_codes: torch.Tensor | None = None,
                 known_mask: torch.Tensor | None = None, return_nll: bool = False, guidance: float = 1.0):
    """Draw ``n`` code grids (n, H, W) long from ``prior``.

    labels: None, one category for all, (n,) categories, or (n, 2) category and style (a prior
        with ``num_styles``); ignored by unconditional priors.
    temperature: divides the logits (< 1: safer, less varied samples; 0: greedy).
    top_k: keep only the k most likely codes at each position.
    guidance: classifier-free guidance weight w (module doc): 1 samples the model as trained;
        w > 1 needs a class-conditional prior trained with label dropout and costs twice the
        work; without labels (or with an unconditional prior) it is ignored.
    generator: a seeded torch.Generator makes the samples reproducible.
    cond: (n, C, H, W) spatial condition (e.g. the embedded top codes for a bottom prior).
    method: "auto" (the fastest the prior supports), "incremental", "crop" or "naive".
    known_codes, known_mask: (n, H, W) codes and a bool mask of the positions where they are
        given (inpainting): there the given code is kept, and the positions after it are
        drawn conditioned on it. A code is still drawn and discarded at a given position, so
        the random stream, and with an all-False mask the samples, equal unconstrained sampling.
    return_nll: also return each grid's NLL under the prior (n,) in nats — the sum of -log p of
        every code given the codes before it, at temperature 1 and without top-k or guidance,
        i.e. what ``prior.nll_per_image`` computes, collected from the logits sampling already made.
    """
    method, (H, W) = _pick_method(prior, method), tuple(shape)
    if method == "rounds" and return_nll:
        raise ValueError("a masked prior gives no likelihood of its samples (return_nll): use a raster prior")
    if method == "rounds" and cond is not None:
        raise ValueError("the masked prior takes no spatial condition (cond)")
    device = device_of(prior)
    labels = _labels_for(labels, n, device)
    null = _guided_labels(prior, labels, guidance)
    if (known_codes is None) != (known_mask is None):
        raise ValueError("known_codes and known_mask go together")
    if known_mask is not None:
        known_codes, known_mask = known_codes.to(device).long(), known_mask.to(device).bool()
        if known_codes.shape != (n, H, W) or known_mask.shape != (n, H, W):
            raise ValueError(f"known_codes and known_mask must be {(n, H, W)}, got "
                             f"{tuple(known_codes.shape)} and {tuple(known_mask.shape)}")
    out = torch.zeros(n, H, W, dtype=torch.long, device=device)
    nll = torch.zeros(n, device=device) if return_nll else None
    steps = prior.config.rounds if method == "rounds" else H * W
    bar = tqdm(total=math.ceil(n / batch_size) * steps, desc=f"sampling ({method})", disable=not progress,
               leave=False)
    with _evaluating(prior), bar:
        for start in range(0, n, batch_size):
            b = slice(start, start + batch_size)
            grids, lab = out[b], None if labels is None else labels[b]
            c = None if cond is None else cond[b].to(device)
            if method == "rounds":
                known = (None, None) if known_mask is None else (known_codes[b], known_mask[b])
                _unmask(prior, grids, lab, null, guidance, _drawing_all(temperature, top_k, generator), generator,
                        *known, bar=bar)
                continue
            draw = _drawing(temperature, top_k, generator)
            if null is not None:   # each grid twice in one batch: with its labels and with none
                grids, lab, c = grids.repeat(2, 1, 1), torch.cat([lab, null.expand_as(lab)]), \
                    None if c is None else torch.cat([c, c])
                draw = _guided(draw, guidance)
            if known_mask is not None:
                draw = _keeping(draw, known_codes[b], known_mask[b])
            if nll is not None:
                draw = _scoring(draw, nll[b])
            _fill(grids, _logits_at(prior, method, grids, lab, c), draw, bar)
            out[b] = grids[:len(out[b])]
    out = out.cpu()   # callers store, decode and compare codes on the CPU
    return (out, nll.cpu()) if return_nll else out


def sample_codes_naive(prior, n: int, shape=(8, 8), **kwargs) -> torch.Tensor:
    """The reference sampler: re-runs the prior on the whole grid at every position (the
    keywords of :func:`sample_codes`)."""
    return sample_codes(prior, n, shape, method="naive", **kwargs)


@torch.no_grad()   # not inference_mode: the codes may feed autograd later
def decode(vqvae, codes, batch_size: int = 500) -> torch.Tensor:
    """Codes -> uint8 images (n, 3, H, W) through ``vqvae.decode_codes`` (eval mode).

    ``codes``: (n, h, w) for a VQ-VAE, or a (top, bottom) pair of grids for a VQ-VAE-2.
    """
    levels = tuple(codes) if isinstance(codes, (tuple, list)) else (codes,)
    was_training = vqvae.training
    vqvae.eval()
    device = device_of(vqvae)
    try:
        parts = []
        for start in range(0, levels[0].shape[0], batch_size):
            x = vqvae.decode_codes(*(c[start:start + batch_size].to(device).long() for c in levels))
            parts.append(to_uint8(x).cpu())
    finally:
        vqvae.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0, 3, 0, 0, dtype=torch.uint8)


# ---- hierarchical sampling (VQ-VAE-2) ---------------------------------------------------------
# Top codes, then bottom codes given the top, then pixels. Each level is drawn by sample_codes,
# so temperature, top-k, labels, seeds and the incremental fast path behave as for the 32x32
# priors. The bottom prior's condition (PixelSNAIL: its conditioning ResNet over the top codes;
# any other prior: ``cond_fn(top_codes)``, e.g. VQVAE2.top_condition) is computed once per
# sample batch and handed to the sampler as a map, never recomputed per position.

class HierarchicalSamples(NamedTuple):
    top: torch.Tensor                    # (n, 8, 8) long
    bottom: torch.Tensor                 # (n, 16, 16) long
    images: torch.Tensor | None          # (n, 3, 64, 64) uint8 when a VQ-VAE-2 was given


@torch.inference_mode()
def bottom_condition(bottom_prior, codes_top: torch.Tensor, cond_fn: Callable | None = None,
                     batch_size: int = 250) -> torch.Tensor:
    """The bottom prior's condition for the given top codes, computed once per batch of
    ``batch_size``: ``bottom_prior.condition`` if it has one (PixelSNAIL), else ``cond_fn``."""
    fn = getattr(bottom_prior, "condition", None) if cond_fn is None else cond_fn
    if fn is None:
        raise ValueError("the bottom prior has no condition(); pass cond_fn (e.g. vqvae2.top_condition)")
    device = device_of(bottom_prior)
    with _evaluating(bottom_prior):
        parts = [fn(codes_top[s:s + batch_size].to(device)).float() for s in range(0, len(codes_top), batch_size)]
    return torch.cat(parts)


def sample_hierarchical(top_prior, bottom_prior, n: int, *, labels=None, temperature: float = 1.0,
                        top_k: int | None = None, bottom_temperature: float | None = None,
                        bottom_top_k: int | None = None, shapes=((8, 8), (16, 16)), batch_size: int = 250,
                        generator: torch.Generator | None = None, cond_fn: Callable | None = None,
                        vqvae2=None, progress: bool = True, guidance: float = 1.0,
                        bottom_guidance: float | None = None) -> HierarchicalSamples:
    """Draw ``n`` top grids, then ``n`` bottom grids conditioned on them (and decode them when
    ``vqvae2`` is given).

    labels: None, one category or (n,) categories, used by both priors (ignored by unconditional ones).
    temperature / top_k / guidance: as in :func:`sample_codes`, for the top; the bottom uses
    ``bottom_temperature`` / ``bottom_top_k`` / ``bottom_guidance`` when given, else the same.
    cond_fn: top codes -> condition map of a bottom prior without ``condition`` (e.g. a gated
    PixelCNN trained with ``cond=vqvae2.top_condition(codes_top)``).
    """
    (ht, wt), (hb, wb) = shapes
    codes_top = sample_codes(top_prior, n, (ht, wt), labels=labels, temperature=temperature, top_k=top_k,
                             batch_size=batch_size, generator=generator, progress=progress, guidance=guidance)
    cond = bottom_condition(bottom_prior, codes_top, cond_fn, batch_size)
    codes_bottom = sample_codes(bottom_prior, n, (hb, wb), labels=labels,
                                temperature=temperature if bottom_temperature is None else bottom_temperature,
                                top_k=top_k if bottom_top_k is None else bottom_top_k,
                                batch_size=batch_size, generator=generator, cond=cond, progress=progress,
                                guidance=guidance if bottom_guidance is None else bottom_guidance)
    images = decode(vqvae2, (codes_top, codes_bottom), batch_size) if vqvae2 is not None else None
    return HierarchicalSamples(codes_top.cpu(), codes_bottom.cpu(), images)


# ---- images from a prior, as the notebooks draw them ------------------------------------------

def styled(prior) -> bool:
    """Is ``prior`` (or the first of a (top, bottom) pair) conditioned on the vendor as well?"""
    first = prior[0] if isinstance(prior, (tuple, list)) else prior
    return getattr(getattr(first, "config", None), "num_styles", 0) > 0


def draw_labels(categories: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` categories drawn from the empirical distribution of ``categories`` (e.g. the train set),
    so class-conditional samples are compared with real images of the same category mix; for
    (N, 2) (category, style) labels, ``n`` pairs from their joint distribution."""
    generator = torch.Generator().manual_seed(seed)
    if categories.ndim == 2:
        pairs, counts = torch.unique(categories.long(), dim=0, return_counts=True)
        return pairs[torch.multinomial(counts.float(), n, replacement=True, generator=generator)]
    counts = torch.bincount(categories.long()).float()
    return torch.multinomial(counts, n, replacement=True, generator=generator)


def sample_images(prior, vqvae, n: int, *, setting: SamplingSetting = SamplingSetting(), labels=None,
                  seed: int = 0, shape=(8, 8), cond_fn: Callable | None = None,
                  progress: bool = True, rejector=None) -> torch.Tensor:
    """``n`` uint8 images: codes drawn from ``prior`` with ``setting`` (seeded), decoded by ``vqvae``.

    ``prior`` may be a (top, bottom) pair with a VQ-VAE-2: then the codes are drawn level by
    level (:func:`sample_hierarchical`; ``cond_fn`` as there) and ``shape`` is ignored.
    With ``setting.candidates`` k > 1, k rounds of ``n`` images are drawn from one seeded stream
    (the first round is what k = 1 draws) and :func:`best_of` keeps, per sample, the round's image
    that ``rejector`` (a classifier of the prior's labels) gives the highest probability of its label.
    """
    if setting.candidates > 1 and (rejector is None or labels is None):
        raise ValueError(f"{setting} keeps the best of {setting.candidates} candidates by a classifier of the "
                         "labels they were drawn for: give labels and a rejector (stages.train_rejector)")
    generator = torch.Generator().manual_seed(seed)
    drawing = dict(labels=labels, temperature=setting.temperature, top_k=setting.top_k,
                   guidance=setting.guidance, generator=generator, progress=progress)

    def one_round() -> torch.Tensor:
        if isinstance(prior, (tuple, list)):
            top, bottom = prior
            return sample_hierarchical(top, bottom, n, cond_fn=cond_fn, vqvae2=vqvae, **drawing).images
        return decode(vqvae, sample_codes(prior, n, shape, **drawing))

    images = one_round()
    if setting.candidates == 1:
        return images
    return best_of([images] + [one_round() for _ in range(setting.candidates - 1)], labels, rejector)


@torch.no_grad()
def best_of(candidates: list[torch.Tensor], labels, rejector) -> torch.Tensor:
    """Rejection at sampling time (VQ-VAE-2, Razavi et al. 2019; taming transformers): of k
    candidate sets of the same n samples (each (n, C, H, W) uint8, sample i drawn for ``labels[i]``:
    a class, or (n, 2) class and style), the candidate of each sample to which ``rejector``
    (``.probabilities(images)``: (n, classes)) gives the highest probability of its class; ties keep
    the earlier candidate."""
    n = len(candidates[0])
    sure = torch.stack([label_probabilities(rejector, c, labels) for c in candidates])
    return torch.stack(candidates)[sure.argmax(0), torch.arange(n)]


@torch.no_grad()
def label_probabilities(classifier, images: torch.Tensor, labels) -> torch.Tensor:
    """(n,) the probability ``classifier`` (``.probabilities(images)``: (n, classes)) gives each
    image's label: one class for all, (n,) classes, or (n, 2) class and style."""
    n = len(images)
    classes = torch.as_tensor(labels).long().cpu()
    classes = (classes[:, 0] if classes.ndim == 2 else classes.expand(n)).reshape(n, 1)
    return classifier.probabilities(images).float().cpu().gather(1, classes)[:, 0]
