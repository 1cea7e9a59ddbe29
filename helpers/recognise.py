"""Recognisable: does a sample drawn for a class look like that class? Two judges, both classifiers
trained once per dataset and size on the real train images (:class:`EmojiClassifier`,
checkpointed like every model).

**The category GAN-test** (Shmelkov et al. 2018, "How good is my GAN?"): a classifier of the ~10
categories in full colour; the **recognisable share** of category-conditioned samples is the
share it puts in the category they were drawn for, over its accuracy on the real val images. It
is passable by colour and silhouette: at the level of the categories a yellow disc is a Smiley, a
rectangle a Flag, a rounded square a Symbol, so samples that are blobs to the eye score close to
real emojis. It stays as the coarse check it is.

**The judge**: a classifier of the ~100 sub-categories of emoji.json ("face-smiling",
"animal-mammal", "country-flag", ...) that sees no hue (:func:`helpers.models.classifier.hue_free`:
it reads the plain mean of the three channels, and trains on the grey of randomly permuted
channels), so that it must read shapes and features. It also trains on blobs (below) of a share
of its images, labels kept, so that it has learnt what colour and a rough silhouette say and how
unsure they leave it (:class:`JudgeConfig`). Its references, computed once per fit:

* **real val**: the real val images (emojis it never saw): the ceiling.
* **blobs**: the same images under a Gaussian blur of :attr:`JudgeConfig.blob_sigma` of the
  image side (:func:`blobs`): the right colours and the rough silhouette in the right place, with
  no feature left; what a blob earns.

Every measure is placed between the two (:func:`placed`: 0 is a blob, 1 is an unseen real emoji):

* **sub-category share**: the judge's accuracy on samples drawn for sub-categories, placed. It
  needs priors conditioned on sub-categories (``LABELS = "subcategory"`` in 02 / 04); for priors
  conditioned on categories it is :data:`NOT_MEASURED` (no sub-category to check against).
* **sureness**: the judge's mean top probability on the samples, placed: measured for every
  prior, whatever it is conditioned on, and per category (samples drawn for a category against
  that category's val images and blobs), so a reader sees which kinds of emoji are drawn well.

Fidelity sits beside them in the metrics files (precision, density and coverage of the samples
against train, and of the real val images as their floor; :mod:`helpers.metrics.generation`).
The judges measure; they never choose settings or reject samples. That is the work of a third
classifier, **the rejector** (:func:`fit_rejector`): in colour, of the priors' own labels, from a
seed and a checkpoint of its own. Settings are chosen with its sureness beside the val FID
(:func:`helpers.stages.pick_setting`), and rejection sampling keeps the candidate it is surest of
(:func:`helpers.sampling.best_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from . import paths
from .models.classifier import ClassifierConfig, EmojiClassifier, gaussian_blur, hue_free
from .runtime import fork_rng, pick_device
from .sampling import label_probabilities
from .train import TrainConfig, Trainer

# What a prior conditioned on categories has in place of a sub-category share.
NOT_MEASURED = "not measured: drawn for categories, not sub-categories"
# Fidelity of the real val images against train, written beside the judge's references.
FIDELITY = ("precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class JudgeConfig:
    """Every setting of the judge, in one place: how it trains (the category classifier of the
    GAN-test trains alike) and how its blobs are made; the profile gives only the step budget
    (``profile.classifier_steps``, per classifier and size)."""

    lr: float = 3e-3          # Adam peak: the category classifier's since the GAN-test was built,
                              # its val accuracy flat by ~900 steps at it (helpers/profiles.py, full)
    batch_size: int = 128     # images per step: full's budget sees the train set about ten times
    blob_sigma: float = 1 / 8  # the blur of a blob, a share of the image side (4 px at 32 px, 8 at
                               # 64): eyes, mouths and outlines are gone, the colours and a rough
                               # silhouette (round, wide, tall) stay (06 shows blobs beside their
                               # images); at 1/12 a ghost of a cat's eyes is still there
    blobs: float = 0.25       # share of each training batch blurred to blobs (labels kept): a judge
                              # that never saw a blob buckets all of them somewhere arbitrary and
                              # sure; one that learned them earns on blobs what colour and
                              # silhouette can earn, and is as unsure as they leave it. A quarter
                              # leaves three quarters of its steps to the real images
    min_span: float = 0.05    # the least a judge must gain from real val images over their blobs
                              # (in accuracy or mean top probability, overall or in a category)
                              # for a figure to be placed between them: on a shorter span it does
                              # not know those images, and the placed figure is noise (a mean of
                              # ten samples, a quick profile's per category, moves by more)

    def train_config(self, profile) -> TrainConfig:
        """How a classifier of ``profile`` trains: its steps and seed, these settings."""
        return TrainConfig(max_steps=profile.classifier_steps, lr=self.lr, batch_size=self.batch_size,
                           seed=profile.seed, curve_every=profile.curve_every)

    def model_config(self) -> dict:
        """What the judge's :class:`ClassifierConfig` takes from here: no hue, these blobs."""
        return {"hue_free": True, "blobs": self.blobs, "blob_sigma": self.blob_sigma}


def checkpoint_name(size: int, label: str = "category", judge: bool = False) -> str:
    """``classifier32`` (the category at 32 px, in colour), ``classifier64_subcategory``, ``judge32``
    (the hue-free sub-category judge), ``judge64_category``, ..."""
    if judge:
        return f"judge{size}" if label == "subcategory" else f"judge{size}_{label}"
    return f"classifier{size}" if label == "category" else f"classifier{size}_{label}"


def rejector_name(size: int, label: str) -> str:
    """``rejector32_subcategory``, ...: the checkpoint of :func:`fit_rejector`."""
    return f"rejector{size}_{label}"


def fit_classifier(ds, size: int, profile: str, config: TrainConfig, *, label: str = "category",
                   judge: JudgeConfig | None = None, device=None, name: str | None = None) -> EmojiClassifier:
    """Train (or resume, or load) the classifier of the ``label`` ("category" or "subcategory") of
    ``size`` px images of dataset ``ds`` (with ``judge``, the hue-free kind its settings make):
    ``artifacts/<profile>/<checkpoint_name>.pt`` (or ``<name>.pt``). It draws its random numbers (first weights,
    batches, augmentation) from ``config.seed`` alone, not from what ran before it in the
    process: the same classifier whichever priors a notebook fits first."""
    classes, names = ds.classes(label)
    # the CPU's stream and the training device's: MPS as well as CUDA
    with fork_rng(torch.device(device) if device is not None else pick_device()):
        torch.manual_seed(config.seed)
        model = EmojiClassifier(ClassifierConfig(num_classes=len(names), image_size=size,
                                                 **(judge.model_config() if judge else {})))
        train = (ds.images(size, "train"), classes[ds.rows("train")])
        val = (ds.images(size, "val"), classes[ds.rows("val")])
        trainer = Trainer(model, train, val, config,
                          paths.checkpoint_path(profile, name or checkpoint_name(size, label, judge is not None)),
                          data_fingerprint=ds.fingerprint, extra={"image_size": size, "label": label}, device=device)
        return trainer.run()


def fit_rejector(ds, size: int, profile, label: str, config: JudgeConfig = JudgeConfig(),
                 device=None) -> EmojiClassifier:
    """The classifier that rejection sampling keeps candidates by (:func:`helpers.sampling.best_of`)
    and that settings are chosen with: in colour, of the priors' ``label`` at ``size`` px, trained
    like the others but from a seed of its own (``profile.seed + 1``) into a checkpoint of its own,
    so that it is never the GAN-test's classifier and never the judge: what one model picked,
    another scores."""
    return fit_classifier(ds, size, profile.name, rejector_train_config(profile, config), label=label,
                          device=device, name=rejector_name(size, label))


def rejector_train_config(profile, config: JudgeConfig = JudgeConfig()) -> TrainConfig:
    """How :func:`fit_rejector` trains: as the judges, from the next seed."""
    return replace(config.train_config(profile), seed=profile.seed + 1)


def label_probability(model: EmojiClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean probability ``model`` gives each image's label (a class, or (n, 2) class and
    style): how sure the rejection classifier is of a sample set."""
    return float(label_probabilities(model, images, labels).mean())


def accuracy(model: EmojiClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` the classifier assigns to ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError("no images to classify")
    return float((model.predict(images).cpu() == labels.cpu()).float().mean())


def real_val_accuracy(model: EmojiClassifier, ds, label: str = "category") -> float:
    """The reference: the classifier's accuracy on the real val images (emojis it never saw)."""
    size = model.config.image_size
    return accuracy(model, ds.images(size, "val"), ds.classes(label)[0][ds.rows("val")])


def recognisable(model: EmojiClassifier, samples: torch.Tensor, labels: torch.Tensor, reference: float) -> dict:
    """The category GAN-test: ``sample_accuracy`` of category-conditioned ``samples`` (drawn for
    ``labels``: categories, or (n, 2) category and style), the real val accuracy ``reference`` and
    their ratio ``recognisable_share``."""
    if not reference > 0:
        raise ValueError(f"the real val accuracy must be positive, not {reference}")
    acc = accuracy(model, samples, labels[:, 0] if labels.ndim == 2 else labels)
    return {"sample_accuracy": acc, "real_val_accuracy": reference, "recognisable_share": acc / reference}


# ---- the judge's references ---------------------------------------------------------------------

def blobs(images: torch.Tensor, sigma: float, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (B, 3, S, S) under a Gaussian blur of ``sigma`` pixels (:func:`gaussian_blur`)."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images (B, 3, S, S), got {images.dtype} {tuple(images.shape)}")
    return torch.cat([gaussian_blur(images[i:i + batch_size].float(), sigma).round().clamp(0, 255).to(torch.uint8)
                      for i in range(0, len(images), batch_size)]) if len(images) else images.clone()


def judge_view(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as the judge sees them: their channel mean, as grey uint8 (B, 3, S, S) to show."""
    return hue_free(images).add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)


def placed(value: float | None, blob: float | None, real: float | None, min_span: float = 0.0) -> float | None:
    """``value`` placed between what blobs earn (0) and what real val images earn (1); None when
    any is missing or real images do not earn more than blobs by over ``min_span`` (nothing to
    place it on: a judge trained for a few steps, a category it has not learnt, or none of whose
    images is in val)."""
    if value is None or blob is None or real is None or not real - blob > max(min_span, 0.0):
        return None
    return (value - blob) / (real - blob)


def _mean(x: torch.Tensor) -> float | None:
    return float(x.float().mean()) if len(x) else None


@dataclass
class Judge:
    """The hue-free sub-category classifier and its references (:func:`Judge.fit`): ``real_val``
    and ``blobs``, each {judge_accuracy, judge_top_probability, its per-category means}."""

    model: EmojiClassifier
    category_names: list[str]
    sigma: float              # the blobs' blur, in pixels
    real_val: dict
    blobs: dict
    min_span: float = JudgeConfig.min_span

    @classmethod
    def fit(cls, ds, size: int, profile, config: JudgeConfig = JudgeConfig(), device=None) -> "Judge":
        """Train (or resume, or load) ``judge<size>.pt`` of ``profile`` and measure its references
        on all the val images of ``ds`` and their blobs."""
        model = fit_classifier(ds, size, profile.name, config.train_config(profile), label="subcategory",
                               judge=config, device=device)
        rows = ds.rows("val")
        subcategory, categories = ds.classes("subcategory")[0][rows], ds.category[rows]
        names = list(ds.category_names)
        sigma = model.config.blob_sigma * size    # the blobs it trained with (its checkpoint's)
        val = ds.images(size, "val")
        judge = cls(model, names, sigma, {}, {}, config.min_span)
        judge.real_val = judge._measure(val, categories, subcategory)
        judge.blobs = {**judge._measure(blobs(val, sigma), categories, subcategory), "blur_sigma_px": sigma}
        return judge

    def _measure(self, images, categories, subcategories=None) -> dict:
        top, predicted = self.model.probabilities(images).max(1)
        out = {} if subcategories is None else {"judge_accuracy": _mean(predicted == subcategories)}
        out["judge_top_probability"] = _mean(top)
        out["judge_top_probability_per_category"] = {name: _mean(top[categories == c])
                                                     for c, name in enumerate(self.category_names)}
        return out

    def score(self, samples: torch.Tensor, categories: torch.Tensor, subcategories: torch.Tensor | None = None) -> dict:
        """The judge on ``samples`` drawn for ``categories`` (and, for priors conditioned on them,
        ``subcategories``): ``subcategory_share`` (:data:`NOT_MEASURED` without sub-categories),
        ``sureness`` and ``sureness_per_category``, with the raw ``judge_accuracy`` and
        ``judge_top_probability`` they are placed from."""
        if len(samples) != len(categories) or (subcategories is not None and len(subcategories) != len(samples)):
            raise ValueError(f"{len(samples)} samples but {len(categories)} categories"
                             + ("" if subcategories is None else f" and {len(subcategories)} sub-categories"))
        if len(samples) == 0:
            raise ValueError("no samples to judge")
        m = self._measure(samples, categories, subcategories)
        real, blob, span = self.real_val, self.blobs, self.min_span
        share = NOT_MEASURED if subcategories is None else \
            placed(m["judge_accuracy"], blob["judge_accuracy"], real["judge_accuracy"], span)
        key = "judge_top_probability_per_category"
        per_category = {name: placed(p, blob[key][name], real[key][name], span) for name, p in m[key].items()}
        return {"subcategory_share": share, **({"judge_accuracy": m["judge_accuracy"]} if subcategories is not None
                                               else {}),
                "sureness": placed(m["judge_top_probability"], blob["judge_top_probability"],
                                   real["judge_top_probability"], span),
                "judge_top_probability": m["judge_top_probability"], "sureness_per_category": per_category}


@dataclass
class Judges:
    """What a prior stage scores every sample set with: the category GAN-test's classifier (in
    colour) with its real val accuracy, and the hue-free sub-category :class:`Judge`."""

    classifier: EmojiClassifier
    reference: float
    judge: Judge

    @classmethod
    def fit(cls, ds, size: int, profile, config: JudgeConfig = JudgeConfig()) -> "Judges":
        """Both classifiers of ``size`` px (trained, resumed or loaded) and their references."""
        classifier = fit_classifier(ds, size, profile.name, config.train_config(profile))
        return cls(classifier, real_val_accuracy(classifier, ds), Judge.fit(ds, size, profile, config))

    def score(self, samples: torch.Tensor, categories: torch.Tensor, subcategories: torch.Tensor | None = None) -> dict:
        """The category GAN-test and the judge of one sample set (:meth:`Judge.score`)."""
        return {**recognisable(self.classifier, samples, categories, self.reference),
                **self.judge.score(samples, categories, subcategories)}

    def references(self, floor: dict) -> dict:
        """Once per metrics file: ``real_val`` (its fidelity against train, from ``floor``, the
        :func:`helpers.metrics.generation_metrics` of the real val images, and the judge on it) and
        ``blobs`` (the judge on them)."""
        return {"real_val": {**{k: floor.get(k) for k in FIDELITY}, **self.judge.real_val}, "blobs": self.judge.blobs}


def sample_classes(grids, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(categories, sub-categories or None) of sample ``labels`` drawn from priors on ``grids``
    (their class, or (n, 2) class and style)."""
    classes = labels[:, 0] if labels.ndim == 2 else labels
    categories = grids.to_category(classes)
    return categories, (classes if grids.label == "subcategory" else None)


# ---- what 06 shows of the metrics files ------------------------------------------------------

def _priors(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, dict) and "fid" in v}


def judge_rows(prior_metrics: dict[str, dict]) -> list[dict]:
    """One row per prior of the metrics files ``{stage: metrics}`` (prior_vqvae, prior_vqvae2):
    its FID over the stage's floor, the category GAN-test (passable by colour), the judge's
    sub-category share and sureness with the raw figures they are placed from, and fidelity;
    then per stage the real val images and their blobs, the references."""
    def row(name, v, fid_ratio=None):
        return {"images": name, "fid / floor": fid_ratio,
                "category GAN-test (passable by colour)": v.get("recognisable_share"),
                "sub-category share": v.get("subcategory_share"), "judge accuracy": v.get("judge_accuracy"),
                "sureness": v.get("sureness"), "judge top probability": v.get("judge_top_probability"),
                "precision": v.get("precision"), "density": v.get("density"), "coverage": v.get("coverage")}

    rows, references = [], []
    for stage, m in prior_metrics.items():
        rows += [row(f"{name} ({stage})", v, v["fid"] / m["fid_floor"]) for name, v in _priors(m).items()]
        references += [row(f"{what} ({stage})", m[key]) for key, what in (("real_val", "real val"), ("blobs", "blobs"))
                       if isinstance(m.get(key), dict)]
    return rows + references


def sureness_rows(prior_metrics: dict[str, dict]) -> list[dict]:
    """One row per category: each prior's sureness on the samples drawn for it (None where it
    cannot be placed), the priors of the metrics files ``{stage: metrics}`` side by side."""
    columns = {f"{name} ({stage})": v.get("sureness_per_category") or {}
               for stage, m in prior_metrics.items() for name, v in _priors(m).items()}
    categories = list(dict.fromkeys(c for per in columns.values() for c in per))
    return [{"category": c, **{prior: per.get(c) for prior, per in columns.items()}} for c in categories]


__all__ = ["NOT_MEASURED", "FIDELITY", "JudgeConfig", "checkpoint_name", "fit_classifier", "accuracy",
           "real_val_accuracy", "recognisable", "blobs", "judge_view", "placed", "Judge", "Judges",
           "sample_classes", "judge_rows", "sureness_rows"]
