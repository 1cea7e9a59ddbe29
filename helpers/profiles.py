"""The one profile table: how big a run is (data, training steps, sample counts).

Notebooks hold a literal ``PROFILE`` in their ``parameters`` cell and turn it
into a :class:`Profile` here, in the cell after, so papermill overrides work.
Every training budget is a number of optimizer steps: the same profile and seed
train the same models on any machine (a slower one just takes longer). Steps,
not epochs, because the priors train on several augmented copies of the codes
and a budget should not change meaning when the data or its copies do.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

DEFAULT_PROFILE = "full"
# The split of 00. "identity" is ours: val emojis were never seen in any drawing. "random" is the
# original report's (a random 80/20 of images), where most val images have another vendor's
# drawing or skin tone of the same emoji in train: kept only to set our figures beside the report's.
SPLITS = ("identity", "random")
RANDOM_SUFFIX = "-random"


@dataclass(frozen=True)
class Profile:
    name: str
    max_emojis: int | None       # emoji identities kept (all vendors of each); None = all
    vqvae_steps: int             # 01: VQ-VAE 32x32 (8x8 codes)
    latent16_steps: int          # 01: the 16x16-latent side model of the rate / quality table
    prior_steps: dict            # 02: steps per prior on the 8x8 codes ("pixelcnn", "gated_pixelcnn", "transformer",
                                 # "maskgit")
    vqvae2_steps: int            # 03: VQ-VAE-2 64x64
    prior2_steps: dict           # 04: steps per prior, "<family>_<level>" (pixelsnail / pixelcnn, top / bottom)
    superres_steps: int          # 05: super-resolution decoder 64 -> 128
    classifier_steps: int        # 02 / 04: the GAN-test's category classifier (helpers/recognise.py), per size
    n_samples: int               # generated images per prior for FID/KID/PR
    eval_limit: int | None       # images per split that evaluations use (FID references, reconstruction
                                 # and inpainting metrics, super-resolution): a seeded subset; None = all
    prior_copies: bool = True    # 02 / 04: priors also train on the codes of mirrored and shifted train images
    prior_batch_size: int = 64   # 02 / 04: code grids per prior step (the notebooks' BATCH_SIZE, unless set there)
    seed: int = 0
    split: str = "identity"      # 00: "identity" (every drawing of an emoji on one side) or "random"
    curve_every: int | None = None  # every model also validates every this many steps (learning curves)
    # 02 / 04: the prior families whose sampling settings may keep the best of several candidates
    # (rejection: k times the sampling work); the others are scored on their one-candidate settings
    # only. None: every family.
    rejection_priors: tuple[str, ...] | None = None

    def with_split(self, split: str) -> "Profile":
        """This profile on another split: ``"random"`` is the profile ``<name>-random``, with its own
        dataset and artifacts, so both splits' results can stand side by side."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
        base = self.name.removesuffix(RANDOM_SUFFIX)
        return replace(self, name=base if split == "identity" else base + RANDOM_SUFFIX, split=split)

    def as_dict(self) -> dict:
        return asdict(self)


def _priors2(pixelsnail: int, pixelcnn: int) -> dict:
    """04's four priors: each family's top and bottom prior get the same steps."""
    return {f"{family}_{level}": steps for family, steps in (("pixelsnail", pixelsnail), ("pixelcnn", pixelcnn))
            for level in ("top", "bottom")}


PROFILES = {
    # CI and nbval: every code path runs once on a tiny subset; numbers mean nothing. A few steps
    # per model and evaluations on 32 images per split and 16 samples: Inception passes and
    # training were most of CI's time on a slow CPU.
    "smoke": Profile("smoke", max_emojis=60, vqvae_steps=12, latent16_steps=6,
                     prior_steps={"pixelcnn": 10, "gated_pixelcnn": 5, "transformer": 5, "maskgit": 5},
                     vqvae2_steps=12,
                     prior2_steps=_priors2(5, 5), superres_steps=9, classifier_steps=3,
                     n_samples=16, eval_limit=32),
    # A first look in at most 15 minutes for the whole chain on 2 cores with fast bf16, the slower
    # reference CPU included (docs/PERFORMANCE.md): all the data, short training, and every
    # evaluation on 100 images per split (its numbers are not comparable with full's). One prior
    # per size, the two 05 needs: with its minutes split over every family, each prior drew
    # scattered dots; one prior with them draws emoji shapes (docs/EXPERIMENTS.md, "A quick profile
    # that draws emojis"). No augmented codes: a prior that trains for about two passes over the
    # train codes gains nothing from more of them. The priors at half full's batch and the same
    # steps: about half their minutes, for a small loss of val NLL (docs/EXPERIMENTS.md, "A quick
    # profile within 15 minutes").
    "quick": Profile("quick", max_emojis=None, vqvae_steps=400, latent16_steps=40,
                     prior_steps={"pixelcnn": 500}, vqvae2_steps=600,
                     prior2_steps={"pixelsnail_top": 300, "pixelsnail_bottom": 300},
                     superres_steps=40, classifier_steps=180, n_samples=100, eval_limit=100, prior_copies=False,
                     prior_batch_size=32),
    # The results, the whole chain within 150 minutes on 2 fast CPU cores. Why each budget sits
    # where it does: docs/EXPERIMENTS.md, "Decisions", and the sections it names (the learning
    # curves of the curves profile are in docs/curves/curves/):
    # - VQ-VAE 6000: its val PSNR is close to flat by then.
    # - its 16x16 side model 500: still rising; it only fills the rate / quality table, whose
    #   point (four times the bits, a few dB more) 500 steps already make.
    # - transformer 2200: still gains beyond it; 2200 is what fits the chain.
    # - PixelCNN 1400: the report's 32 px prior, behind the transformer; its minutes beyond 1400
    #   pay, with the 64 px PixelCNN's, for the PixelSNAIL's steps.
    # - no gated PixelCNN: behind the PixelCNN at equal steps, at half its speed; its minutes pay
    #   for the hue-free judges and the rejectors (02 trains it where PRIORS names it and a profile
    #   gives it steps).
    # - VQ-VAE-2 3000: still rising: bound by the chain, not by a flat curve.
    # - PixelSNAIL 2100 per level: its steps are the largest lever measured on the 64 px samples,
    #   on the judge and to the eye (docs/EXPERIMENTS.md, "The 64 px PixelSNAIL at 2100 steps per
    #   level"); the curves profile's 3300 is more than the chain has room for.
    # - 64 px PixelCNN 200 per level: the report's 64 px prior, behind the PixelSNAIL at the
    #   slowest steps of the chain; kept trained and scored, its minutes moved to the PixelSNAIL
    #   and to the chain's margin (it draws colour patches at 280 steps as at 200).
    # - super-resolution 500: still rising, and still above bicubic and Lanczos; its
    #   minutes beyond 500 are the chain's margin for slow hosts.
    # - GAN-test classifier 900: its val accuracy is flat from there on.
    # - rejection (the notebooks' settings with candidates > 1) for the best prior of each size
    #   only, the transformer and the PixelSNAIL: four candidates made the PixelSNAIL's samples
    #   easier to read, and the report's PixelCNNs, drawing one candidate each, pay for the extra
    #   draws (docs/EXPERIMENTS.md, "Rejection for the best prior of each size").
    # Evaluations on a seeded 3000 of the 11,667 train images (every val image): a smaller FID
    # reference is what fit the chain in its minutes (docs/EXPERIMENTS.md, "Full within 150 minutes
    # on either reference CPU"). Steps first set from the minute budgets: docs/EXPERIMENTS.md,
    # "Budgets in steps".
    "full": Profile("full", max_emojis=None, vqvae_steps=6000, latent16_steps=500,
                    prior_steps={"pixelcnn": 1400, "transformer": 2200}, vqvae2_steps=3000,
                    prior2_steps=_priors2(2100, 200), superres_steps=500, classifier_steps=900,
                    n_samples=2000, eval_limit=3000, rejection_priors=("transformer", "pixelsnail")),
    # Learning curves: full's data and autoencoders (the same steps train the same weights), the
    # priors three times full's steps, every model validated every 100 steps, and small
    # evaluations, 200 samples per prior and a seeded 200 images per split, twice quick's (its FIDs
    # are not full's). `python -m helpers.curves --profile curves` draws them.
    "curves": Profile("curves", max_emojis=None, vqvae_steps=6000, latent16_steps=1000,
                      prior_steps={"pixelcnn": 3300, "gated_pixelcnn": 1680, "transformer": 3300}, vqvae2_steps=3000,
                      prior2_steps=_priors2(3300, 1680), superres_steps=1100, classifier_steps=1400,
                      n_samples=200, eval_limit=200, curve_every=100),
    # For a GPU: full's chain with longer training where full's learning curves still fall at its
    # budget (docs/curves/curves/, the notes on "full" above), and evaluations on everything.
    # - three times full's steps for the priors, the VQ-VAE-2, the 16x16 side model and
    #   super-resolution: the curves profile measured the 64 px priors and the gated PixelCNN up to
    #   there and the 32 px PixelCNN and transformer up to 1.5 times, all still falling at the end;
    #   the VQ-VAE-2's, the side model's and super-resolution's still rise at full's steps;
    # - full's steps where the curve is flat: the VQ-VAE (6000) and the classifier (900);
    # - the whole train set as the FID reference (eval_limit None) and 10,000 samples per prior.
    # Budgets past the curves' last point are not measured gains: their curves say whether they pay.
    "large": Profile("large", max_emojis=None, vqvae_steps=6000, latent16_steps=3000,
                     prior_steps={"pixelcnn": 6600, "gated_pixelcnn": 1680, "transformer": 6600}, vqvae2_steps=9000,
                     prior2_steps=_priors2(3300, 1680), superres_steps=3300, classifier_steps=900,
                     n_samples=10_000, eval_limit=None),
}


def _priors(profile: Profile) -> set[str]:
    return {*profile.prior_steps, *profile.prior2_steps}


def trains(profile: Profile, model: str) -> bool:
    """Whether ``profile`` trains ``model``: False only for a prior that some profile's budget table
    names and this one's does not (quick trains one prior per size); other models every profile trains."""
    known = set().union(*map(_priors, PROFILES.values()))
    return model not in known or model in _priors(profile)


def profile_names() -> list[str]:
    """Every name :func:`get_profile` takes: the table's rows and their ``-random`` variants."""
    return sorted(PROFILES) + sorted(name + RANDOM_SUFFIX for name in PROFILES)


def get_profile(name: str | None = None, split: str | None = None) -> Profile:
    """The profile called ``name`` (default: $EMOJIVQ_PROFILE, else "full"); ``<name>-random`` is
    that row on the random split. ``split`` (if given) overrides the name's split."""
    name = name or os.environ.get("EMOJIVQ_PROFILE", DEFAULT_PROFILE)
    base = name.removesuffix(RANDOM_SUFFIX)
    if base not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {profile_names()}")
    profile = PROFILES[base].with_split("random" if name.endswith(RANDOM_SUFFIX) else "identity")
    return profile.with_split(split) if split else profile
