"""Recognisable: does a sample drawn for a category look like that category? (the GAN-test)

FID says how far two distributions are; a user asks "is this a cat?". Following Shmelkov et al.
(2018, "How good is my GAN?"), a category classifier is trained once per dataset on the real
train images (:class:`helpers.models.classifier.EmojiClassifier`, checkpointed like every
model); its accuracy on the real val images is the reference, and the **recognisable share**
of a set of category-conditioned samples is the share it assigns to the category they were
drawn for, over that reference (1.0: as recognisable as unseen real emojis). Priors conditioned
on sub-categories are scored on the category of theirs, and by a second classifier, of the
sub-category, on the finer task as well.
"""

from __future__ import annotations

import torch

from . import paths
from .models.classifier import ClassifierConfig, EmojiClassifier
from .train import TrainConfig, Trainer


def classifier_config(profile) -> TrainConfig:
    """How the classifier trains: ``profile.classifier_steps`` of Adam at 3e-3, batches of 128."""
    return TrainConfig(max_steps=profile.classifier_steps, lr=3e-3, batch_size=128, seed=profile.seed,
                       curve_every=profile.curve_every)


def checkpoint_name(size: int, label: str = "category") -> str:
    """``classifier32`` (the category at 32 px), ``classifier64_subcategory``, ..."""
    return f"classifier{size}" if label == "category" else f"classifier{size}_{label}"


def fit_classifier(ds, size: int, profile: str, config: TrainConfig, *, label: str = "category",
                   device=None) -> EmojiClassifier:
    """Train (or resume, or load) the classifier of the ``label`` ("category" or "subcategory") of
    ``size`` px images of dataset ``ds``: ``artifacts/<profile>/<checkpoint_name>.pt``. It draws
    its random numbers (first weights, batches, augmentation) from ``config.seed`` alone, not from
    what ran before it in the process: the same classifier whichever priors a notebook fits first."""
    classes, names = ds.classes(label)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = EmojiClassifier(ClassifierConfig(num_classes=len(names), image_size=size))
        train = (ds.images(size, "train"), classes[ds.rows("train")])
        val = (ds.images(size, "val"), classes[ds.rows("val")])
        trainer = Trainer(model, train, val, config, paths.checkpoint_path(profile, checkpoint_name(size, label)),
                          data_fingerprint=ds.fingerprint, extra={"image_size": size, "label": label}, device=device)
        return trainer.run()


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
    """``sample_accuracy`` of category-conditioned ``samples`` (drawn for ``labels``: categories,
    or (n, 2) category and style), the real val accuracy ``reference`` and their ratio
    ``recognisable_share``."""
    if not reference > 0:
        raise ValueError(f"the real val accuracy must be positive, not {reference}")
    acc = accuracy(model, samples, labels[:, 0] if labels.ndim == 2 else labels)
    return {"sample_accuracy": acc, "real_val_accuracy": reference, "recognisable_share": acc / reference}
