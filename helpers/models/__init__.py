"""Model families, one per file. Each model keeps its constructor arguments in a
dataclass ``.config`` so that a checkpoint can rebuild it (see helpers.checkpoints).

Importing this package loads no model (nor torch): what knows the prior families (paths, curves)
reads :data:`PRIOR_FAMILIES` cheaply, and ``MODEL_REGISTRY`` imports every model file the first
time it is asked for.
"""

from __future__ import annotations

import importlib

# The prior families, per image size: the 32 px priors (02) model the VQ-VAE's code grid, the
# 64 px ones (04) are a top and a bottom prior over the VQ-VAE-2's two grids. Name (what its
# checkpoints, budgets, samples and metrics are called) -> "model_file.Class". A new family is a
# model file (a helpers.models.prior.Prior), a line here and its notebook.
PRIOR_FAMILIES: dict[int, dict[str, str]] = {
    32: {"pixelcnn": "pixelcnn.PixelCNN", "gated_pixelcnn": "pixelcnn.GatedPixelCNN",
         "transformer": "transformer.TransformerPrior", "maskgit": "maskgit.MaskedTransformerPrior"},
    64: {"pixelsnail": "pixelsnail.PixelSNAIL", "pixelcnn": "pixelcnn.GatedPixelCNN"},
}
# The latent levels a prior family of each size has, one checkpoint each (prior_checkpoint).
PRIOR_LEVELS = {32: ("codes",), 64: ("top", "bottom")}
OTHER_MODEL_FILES = ("vqvae", "vqvae2", "superres", "classifier")


def prior_checkpoint(family: str, level: str) -> str:
    """The checkpoint name of ``family``'s prior of ``level``: the family's own at 32 px (one
    level, "codes"), ``<family>_<level>`` at 64 px."""
    return family if level == "codes" else f"{family}_{level}"


def prior_checkpoints(size: int) -> list[str]:
    """The checkpoint names of every prior of ``size`` px, family by family."""
    return [prior_checkpoint(family, level) for family in PRIOR_FAMILIES[size] for level in PRIOR_LEVELS[size]]


def prior_class(family: str, size: int) -> type:
    """The model class of ``family`` at ``size`` px (imports its model file)."""
    spec = PRIOR_FAMILIES.get(size, {}).get(family)
    if spec is None:
        known = {s: list(f) for s, f in PRIOR_FAMILIES.items()}
        raise ValueError(f"no prior family {family!r} at {size} px; the families: {known}")
    module, name = spec.split(".")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


class Configurable:
    """Mixin of every model: built as ``Model(config_class(...))``, rebuilt from a config dict.

    A config field that is gone stays loadable from older checkpoints: ``renamed_fields`` maps an
    old name to today's; ``retired_fields`` maps a removed field to the value that does what the
    model does now (a checkpoint holding that value is rebuilt without it; any other value cannot
    be rebuilt, and is refused by name)."""

    config_class: type
    renamed_fields: dict[str, str] = {}
    retired_fields: dict[str, object] = {}

    @classmethod
    def config_kwargs(cls, d: dict) -> dict:
        """A checkpoint's config dict in today's fields (see the class doc); ValueError for a retired
        setting the model no longer has."""
        out = {}
        for key, value in d.items():
            if key in cls.retired_fields:
                if value != cls.retired_fields[key]:
                    raise ValueError(f"{cls.__name__} no longer has the setting {key} (this checkpoint has "
                                     f"{key}={value!r}; only {cls.retired_fields[key]!r} rebuilds): retrain it")
                continue
            out[cls.renamed_fields.get(key, key)] = value
        return out

    @classmethod
    def from_config_dict(cls, d: dict):
        return cls(cls.config_class(**cls.config_kwargs(d)))


_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make ``cls`` rebuildable from a checkpoint by its name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _import_all() -> None:
    # Imported for their @register side effect; a missing family is simply not registered.
    prior_files = {spec.split(".")[0] for families in PRIOR_FAMILIES.values() for spec in families.values()}
    for name in (*OTHER_MODEL_FILES, *sorted(prior_files)):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


def __getattr__(name: str):
    if name == "MODEL_REGISTRY":   # class name -> class, every model file imported first
        _import_all()
        return _REGISTRY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
