"""The one profile table: how big a run is (data, epochs, time budgets, sample counts).

Notebooks hold a literal ``PROFILE`` in their ``parameters`` cell and turn it
into a :class:`Profile` here, in the cell after, so papermill overrides work.
Budgets are for 2 CPU cores (the reference machine in the README); every
training loop stops at whichever comes first, its epochs or its minutes. On a
slower machine, $EMOJIVQ_MINUTES_SCALE multiplies every training budget (README,
"On a CPU without fast bf16").
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace

DEFAULT_PROFILE = "full"


@dataclass(frozen=True)
class Profile:
    name: str
    max_emojis: int | None       # emoji identities kept (all vendors of each); None = all
    vqvae_epochs: int            # 01: VQ-VAE 32x32
    vqvae_minutes: float
    prior_epochs: int            # 02: PixelCNN priors on the 8x8 codes (per prior)
    prior_minutes: float         # both priors together; 02's MINUTES_SHARE splits them
    vqvae2_epochs: int           # 03: VQ-VAE-2 64x64
    vqvae2_minutes: float
    prior2_epochs: int           # 04: PixelSNAIL / PixelCNN on top+bottom codes (per prior)
    prior2_minutes: float        # all four priors together; 04's FAMILY_SHARE and BOTTOM_SHARE split them
    superres_epochs: int         # 05: super-resolution decoder 64 -> 128
    superres_minutes: float
    n_samples: int               # generated images per prior for FID/KID/PR
    eval_limit: int | None       # images per split that evaluations use (FID references, reconstruction
                                 # and inpainting metrics, super-resolution): a seeded subset; None = all
    classifier_epochs: int = 15  # 02 / 04: the GAN-test's category classifier (helpers/recognise.py), per size
    augment: bool = True         # 02 / 04: priors also train on the codes of mirrored and shifted train images
    seed: int = 0
    minutes_scale: float = 1.0   # the factor the *_minutes above were multiplied by ($EMOJIVQ_MINUTES_SCALE)

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    # CI and nbval: every code path runs once on a tiny subset; numbers mean nothing. Evaluations
    # on 32 images per split and 16 samples, a quarter minute per group of priors: Inception passes
    # and prior minutes were most of CI's time on a slow CPU.
    "smoke": Profile("smoke", max_emojis=60, vqvae_epochs=2, vqvae_minutes=0.5,
                     prior_epochs=1, prior_minutes=0.25, vqvae2_epochs=1, vqvae2_minutes=0.5,
                     prior2_epochs=1, prior2_minutes=0.25, superres_epochs=1, superres_minutes=0.25,
                     n_samples=16, eval_limit=32, classifier_epochs=1),
    # A first look in at most 15 minutes for the whole chain: all the data, short training, and
    # every evaluation on 200 images per split (its numbers are not comparable with full's). No
    # augmented codes: a prior that trains for about one pass over the train codes gains nothing
    # from more of them, and encoding them took 04 1.6 minutes.
    "quick": Profile("quick", max_emojis=None, vqvae_epochs=30, vqvae_minutes=1.0,
                     prior_epochs=20, prior_minutes=1.0, vqvae2_epochs=15, vqvae2_minutes=1.0,
                     prior2_epochs=10, prior2_minutes=1.5, superres_epochs=5, superres_minutes=0.5,
                     n_samples=200, eval_limit=200, augment=False, classifier_epochs=3),
    # The results: the quality targets of the README, at most 120 minutes for the chain, 40 for
    # 01 + 02 and 50 for 03 + 04 (Inception features included: about 15 minutes in each pair).
    "full": Profile("full", max_emojis=None, vqvae_epochs=400, vqvae_minutes=12,
                    prior_epochs=200, prior_minutes=8, vqvae2_epochs=200, vqvae2_minutes=12,
                    prior2_epochs=100, prior2_minutes=15, superres_epochs=60, superres_minutes=8,
                    n_samples=2000, eval_limit=None),
}


MINUTES_FIELDS = ("vqvae_minutes", "prior_minutes", "vqvae2_minutes", "prior2_minutes", "superres_minutes")


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name`` (default: $EMOJIVQ_PROFILE, else "full"), its training minutes
    multiplied by :func:`minutes_scale`."""
    name = name or os.environ.get("EMOJIVQ_PROFILE", DEFAULT_PROFILE)
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
    scale = minutes_scale()
    if scale == 1:
        return profile
    return replace(profile, minutes_scale=scale, **{f: getattr(profile, f) * scale for f in MINUTES_FIELDS})


def minutes_scale() -> float:
    """$EMOJIVQ_MINUTES_SCALE (default 1): the factor every training budget is multiplied by, so a
    machine slower than the reference one can train the same number of steps (3 on a CPU without
    fast bf16, where training runs at about a third of the reference speed)."""
    raw = os.environ.get("EMOJIVQ_MINUTES_SCALE", "").strip()
    try:
        scale = float(raw) if raw else 1.0
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"EMOJIVQ_MINUTES_SCALE must be a positive number, not {raw!r}")
    return scale
