"""The typed artifacts notebooks hand each other, beside the model checkpoints.

* :class:`CodeGrids` (01/03 -> 02/04/06): the codes of every image of the dataset per latent
  level, and those of the train images' mirrored and shifted copies, with the labels and the split.
* :class:`SampleSet` (02/04 -> 06): the images a prior's FID was measured on, their categories
  and the :class:`SamplingSetting` they were drawn with.

Each is one file under ``artifacts/<profile>/`` (written atomically by
:func:`helpers.checkpoints.atomic_save`), loads with :meth:`load` and checks itself against the
dataset it claims to come from with :meth:`check`, naming the notebook to run again when it does not.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

import torch

from . import paths
from .checkpoints import atomic_save, safe_load
from .data.dataset import LABELS, subcategory_parents
from .profiles import PROFILES, get_profile, trains


class StaleArtifactError(RuntimeError):
    """An artifact was made from another dataset (or by another kind of writer)."""


@dataclass(frozen=True)
class SamplingSetting:
    """How codes are drawn from a prior: a temperature, an optional top-k, a classifier-free
    guidance weight (1: the prior as trained; see helpers/sampling.py) and ``candidates``, the
    images drawn per kept sample (rejection sampling: the one a colour classifier of the prior's
    labels is surest of for its label is kept, an acceptance rate of 1 / candidates; 1: no
    rejection)."""

    temperature: float = 1.0
    top_k: int | None = None
    guidance: float = 1.0
    candidates: int = 1

    def __post_init__(self):
        if self.candidates < 1:
            raise ValueError(f"candidates is the images drawn per kept sample: at least 1, not {self.candidates}")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingSetting":
        """From a dict that may hold more (a scored row of settings); missing keys take the defaults."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if d.get(f.name) is not None})

    def __str__(self) -> str:
        top_k = "" if self.top_k is None else f", top-k {self.top_k}"
        best = "" if self.candidates == 1 else f", best of {self.candidates}"
        return f"T {self.temperature:g}{top_k}, guidance {self.guidance:g}{best}"


def _load(path: Path, kind: str, producer: str) -> dict:
    d = safe_load(path)
    if not isinstance(d, dict) or d.get("kind") != kind:
        raise StaleArtifactError(f"{path} is not a {kind} file (an older format?): run {producer} again")
    return d


def _check(ds, fingerprint: str, what: str, producer: str) -> None:
    if fingerprint != ds.fingerprint:
        raise StaleArtifactError(f"{what} were made from another dataset: run {producer} again")


@dataclass
class CodeGrids:
    """The code grids of one autoencoder: ``codes[level]`` is (N, h, w) long, one row per image of
    the dataset (levels ``"codes"`` for a VQ-VAE, ``"top"`` and ``"bottom"`` for a VQ-VAE-2), and
    ``copy_codes[level]`` the codes of the train images' mirrored and shifted copies, copy after
    copy (each copy in train order). Priors train on grids only, never on images.

    ``label`` says which classes :meth:`labels` gives, the priors' condition: the category, or the
    sub-category (:meth:`with_label`); :meth:`to_category` maps either back to categories."""

    KIND = "code_grids"
    RENAMED = {"augmented": "copy_codes"}   # fields that files written before the rename hold under another name

    codes: dict[str, torch.Tensor]
    num_codes: dict[str, int]
    copy_codes: dict[str, torch.Tensor]
    category: torch.Tensor
    category_names: list[str]
    subcategory: torch.Tensor
    subcategory_names: list[str]
    vendor: torch.Tensor          # each image's vendor: the style a prior may be conditioned on
    vendor_names: list[str]
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    fingerprint: str
    producer: str
    autoencoder_step: int
    label: str = "category"       # what labels() gives: one of helpers.data.LABELS

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.codes)

    @property
    def copies(self) -> int:
        """Mirrored and shifted copies per train image."""
        return len(next(iter(self.copy_codes.values()))) // len(self.train_idx) if self.copy_codes else 0

    def fit(self, level: str) -> torch.Tensor:
        """The grids a prior of ``level`` trains on: the train images' codes, then their copies'."""
        return torch.cat([self.codes[level][self.train_idx], self.copy_codes.get(level, self.codes[level][:0])])

    def with_label(self, label: str) -> "CodeGrids":
        """These grids with priors conditioned on ``label``: "category" or "subcategory"."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}; choose one of {list(LABELS)}")
        return replace(self, label=label)

    @property
    def classes(self) -> torch.Tensor:
        """Each image's class under :attr:`label`."""
        return self.subcategory if self.label == "subcategory" else self.category

    @property
    def class_names(self) -> list[str]:
        return self.subcategory_names if self.label == "subcategory" else self.category_names

    def labels(self, rows: torch.Tensor, style: bool = False) -> torch.Tensor:
        """The classes of ``rows`` (images), or with ``style`` (n, 2) class and vendor."""
        return torch.stack([self.classes[rows], self.vendor[rows]], 1) if style else self.classes[rows]

    def to_category(self, labels: torch.Tensor) -> torch.Tensor:
        """The categories of class ``labels`` (or of the first column of (n, 2) class and style
        labels; the style is kept): what the GAN-test's category classifier is scored against."""
        if self.label == "category":
            return labels
        parents = subcategory_parents(self.subcategory, self.category, len(self.subcategory_names))
        out = labels.clone()
        if out.ndim == 2:
            out[:, 0] = parents[out[:, 0]]
        else:
            out = parents[out]
        return out

    def category_rows(self, per_category: int, seed: int = 0) -> torch.Tensor:
        """``per_category`` class labels for each category in turn: the category itself, or
        sub-categories of it drawn as often as the train images show them (seeded)."""
        if self.label == "category":
            return torch.arange(len(self.category_names)).repeat_interleave(per_category)
        generator = torch.Generator().manual_seed(seed)
        rows = []
        for c in range(len(self.category_names)):
            pool = self.subcategory[self.train_idx][self.category[self.train_idx] == c]
            if len(pool) == 0:   # a category only val shows: any of its sub-categories
                pool = torch.unique(self.subcategory[self.category == c])
            counts = torch.bincount(pool, minlength=len(self.subcategory_names)).float()
            rows.append(torch.multinomial(counts, per_category, replacement=True, generator=generator))
        return torch.cat(rows)

    def fit_labels(self, style: bool = False) -> torch.Tensor:
        """The labels of every row of :meth:`fit` (a copy has its original's)."""
        labels = self.labels(self.train_idx, style)
        return labels.repeat(1 + self.copies, *[1] * (labels.ndim - 1))

    def val(self, level: str) -> torch.Tensor:
        return self.codes[level][self.val_idx]

    def of_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The codes of image ``rows``, one tensor per level in the order the autoencoder's
        ``encode`` returns them: what 05's super-resolution decoder reads, without encoding again."""
        return tuple(self.codes[level][rows] for level in self.levels)

    def val_labels(self, style: bool = False) -> torch.Tensor:
        return self.labels(self.val_idx, style)

    def __str__(self) -> str:
        levels = ", ".join(f"{level} {tuple(c.shape[1:])} of K = {self.num_codes[level]}" for level, c in self.codes.items())
        return (f"{len(self.train_idx)} train / {len(self.val_idx)} val code grids ({levels}), "
                f"{len(self.category_names)} categories ({len(self.subcategory_names)} sub-categories), "
                f"{len(self.vendor_names)} vendors, priors conditioned on the {self.label}; "
                f"priors train on {len(self.fit_labels())} grids "
                f"(the train images' and {self.copies} mirrored or shifted copies of each)")

    def save(self, path: str | Path) -> Path:
        return atomic_save({"kind": self.KIND, **{f.name: getattr(self, f.name) for f in fields(self)}}, path)

    @classmethod
    def load(cls, path: str | Path, producer: str = "the notebook that wrote it") -> "CodeGrids":
        d = {cls.RENAMED.get(k, k): v for k, v in _load(Path(path), cls.KIND, producer).items()}
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING]
        if missing:
            raise StaleArtifactError(f"{path} has no {', '.join(missing)} (an older format): run {producer} again")
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def check(self, ds) -> "CodeGrids":
        """Itself, if it was made from dataset ``ds``; else stop with the notebook to run again."""
        _check(ds, self.fingerprint, "the code grids", self.producer)
        return self


@dataclass
class SampleSet:
    """The images a prior's FID was measured on: uint8 (n, 3, H, W), the category each was drawn
    for, the setting and seed they were drawn with, and the Inception feature cache key under
    which the writer stored their features (so a reader never pushes them through again)."""

    KIND = "sample_set"

    images: torch.Tensor
    labels: torch.Tensor
    setting: SamplingSetting
    prior: str
    seed: int
    features_key: str
    fingerprint: str
    producer: str

    def save(self, path: str | Path) -> Path:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return atomic_save({"kind": self.KIND, **d, "setting": self.setting.as_dict()}, path)

    @classmethod
    def load(cls, path: str | Path, producer: str = "the notebook that wrote it") -> "SampleSet":
        d = _load(Path(path), cls.KIND, producer)
        d = {f.name: d[f.name] for f in fields(cls)}
        return cls(**{**d, "setting": SamplingSetting.from_dict(d["setting"])})

    def check(self, ds) -> "SampleSet":
        _check(ds, self.fingerprint, f"the {self.prior} samples", self.producer)
        return self

    def features(self, cache_dir: str | Path) -> torch.Tensor:
        """Their Inception features, from the cache the writer filled (recomputed only if it is gone)."""
        from .metrics import cached_features

        return cached_features(self.images, self.features_key, cache_dir)


# ---- loading what an earlier notebook wrote, checked against the dataset ----------------------

def load_model(profile: str, name: str, ds, device=None) -> tuple[torch.nn.Module, dict]:
    """The model checkpoint ``name`` (e.g. "vqvae") of ``profile``, rebuilt in eval mode on
    ``device`` (default: :func:`helpers.runtime.pick_device`), and the checkpoint dict; stops with the notebook to run when it is missing or was
    trained on another dataset than ``ds``. The global random stream is as it was before."""
    from .checkpoints import build_model, load_checkpoint
    from .runtime import pick_device

    path = paths.checkpoint_path(profile, name)
    if not path.exists() and not trains(get_profile(profile), name):
        others = [p for p in PROFILES if trains(PROFILES[p], name)]
        raise paths.MissingArtifactError(
            f"the profile {profile!r} does not train {name} (no steps for it in helpers/profiles.py), so no "
            f"notebook of it writes {path.name}: choose a model it trains, or a profile that trains {name} "
            f"({', '.join(others)}).")
    ckpt = load_checkpoint(paths.require(path, name))
    _check(ds, ckpt["data_fingerprint"], name, paths.PRODUCERS.get(name, "the notebook that trains it"))
    with torch.random.fork_rng(devices=[]):   # building draws initial weights: loading leaves the seeded stream alone
        model = build_model(ckpt, pick_device() if device is None else device).eval()
    return model, ckpt


def conditioned_on(ckpt: dict) -> str:
    """What a prior checkpoint's class labels are (02 and 04 record it): "category" or "subcategory"."""
    return ckpt.get("extra", {}).get("label", "category")


def load_grids(profile: str, name: str, ds) -> CodeGrids:
    """The code grids ``name`` ("codes_vqvae", "codes_vqvae2") of ``profile``, checked against ``ds``."""
    producer = paths.PRODUCERS[name]
    return CodeGrids.load(paths.require(paths.checkpoint_path(profile, name), name), producer).check(ds)


def load_samples(profile: str, prior: str, size: int, ds) -> SampleSet:
    """The FID samples of ``prior`` at ``size`` px, checked against ``ds``."""
    name = paths.samples_name(prior, size)
    return SampleSet.load(paths.require(paths.samples_path(profile, prior, size), name),
                          paths.PRODUCERS[name]).check(ds)
