"""Model families, one per file. Each model keeps its constructor arguments in a
dataclass ``.config`` so that a checkpoint can rebuild it (see helpers.checkpoints)."""

from __future__ import annotations

MODEL_REGISTRY: dict[str, type] = {}


class Configurable:
    """Mixin of every model: built as ``Model(config_class(...))``, rebuilt from a config dict."""

    config_class: type

    @classmethod
    def from_config_dict(cls, d: dict):
        return cls(cls.config_class(**d))


def register(cls: type) -> type:
    """Class decorator: make ``cls`` rebuildable from a checkpoint by its name."""
    MODEL_REGISTRY[cls.__name__] = cls
    return cls


def _import_all() -> None:
    # Imported for their @register side effect; a missing family is simply not registered.
    import importlib

    for name in ("vqvae", "vqvae2", "pixelcnn", "pixelsnail", "transformer", "superres", "classifier"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


_import_all()
