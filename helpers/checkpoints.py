"""One checkpoint format for every model: self-describing, atomic, ``weights_only`` loadable.

A checkpoint is a dict of tensors and plain types::

    format, package_version, model_class, model_kwargs, state_dict,
    optimizer, epoch, step, metrics, history, data_fingerprint, extra

so that :func:`build_model` can rebuild the model without the code that
trained it, and :func:`load_checkpoint` can refuse one made for another
model config, image size or dataset (naming the field that differs).
Files are written to a temporary name and renamed, so a kill during a save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from . import __version__

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: unreadable, unsafe, or made for something else."""


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """``write(f)`` into a temporary file in the same folder, fsync, then rename over ``path``:
    a reader (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; a plain file follows the umask
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Indented JSON through :func:`atomic_write` (metrics files, timing)."""
    return atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def safe_load(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` with errors that name the file and say what is wrong.
    ``mmap``: tensors stay in the file's pages until read (copy-on-write), so a reader of the
    dataset pays only for the image sizes it touches."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused — it holds pickled objects other than tensors and plain types "
            f"(weights_only=True). Re-create it with this project's save functions. ({e})"
        ) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: unreadable — the file is truncated or corrupt ({e}). "
                              "Delete it and re-run the notebook that writes it.") from None


def model_spec(model: torch.nn.Module) -> dict:
    """The class name and constructor kwargs that rebuild ``model`` (models keep them in ``.config``)."""
    from dataclasses import asdict, is_dataclass

    config = getattr(model, "config", None)
    kwargs = asdict(config) if is_dataclass(config) else dict(config or {})
    return {"model_class": type(model).__name__, "model_kwargs": kwargs}


def save_checkpoint(path, model: torch.nn.Module, *, optimizer=None, epoch: int = 0, step: int = 0,
                    metrics: dict | None = None, history: dict | None = None,
                    data_fingerprint: str | None = None, extra: dict | None = None) -> Path:
    """Write the one checkpoint format (see module docstring) atomically."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    ckpt = {
        "format": FORMAT_VERSION,
        "package_version": __version__,
        **model_spec(_unwrap(model)),
        "state_dict": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "metrics": dict(metrics or {}),
        "history": dict(history or {}),
        "data_fingerprint": data_fingerprint,
        "extra": dict(extra or {}),
    }
    return atomic_save(ckpt, path)


def load_checkpoint(path, *, expect: dict | None = None) -> dict:
    """Load and check a checkpoint. ``expect`` maps fields (``model_class``, ``model_kwargs``,
    ``data_fingerprint``, or keys of ``extra`` such as ``image_size``) to required values."""
    path = Path(path)
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not an emoji-vq checkpoint (format {FORMAT_VERSION} expected).")
    for field, wanted in (expect or {}).items():
        have = ckpt["extra"].get(field) if field not in ckpt else ckpt[field]
        if field == "model_kwargs" and isinstance(have, dict) and isinstance(wanted, dict):
            have = {**_config_defaults(ckpt.get("model_class")), **_current_kwargs(ckpt, path)}
            for key in sorted(set(have) | set(wanted)):
                if _plain(have.get(key)) != _plain(wanted.get(key)):
                    raise CheckpointError(
                        f"{path}: made for another model config — model_kwargs.{key} is "
                        f"{have.get(key)!r} in the checkpoint, {wanted.get(key)!r} expected.")
        elif _plain(have) != _plain(wanted):
            raise CheckpointError(f"{path}: mismatched checkpoint — {field} is {have!r} in the "
                                  f"checkpoint, {wanted!r} expected.")
    return ckpt


def _config_defaults(model_class: str | None) -> dict:
    """The defaults of a registered model's config: a field added to a config after a checkpoint
    was saved takes its default there, so older checkpoints stay loadable."""
    from dataclasses import MISSING, fields, is_dataclass

    from .models import MODEL_REGISTRY

    config_class = getattr(MODEL_REGISTRY.get(model_class or ""), "config_class", None)
    if not is_dataclass(config_class):
        return {}
    return {f.name: f.default for f in fields(config_class) if f.default is not MISSING}


def _current_kwargs(ckpt: dict, path) -> dict:
    """A checkpoint's model_kwargs in today's config fields: renamed fields under their new names,
    retired ones dropped (``Configurable.config_kwargs``); a retired setting the model no longer
    has stops here, naming it."""
    from .models import MODEL_REGISTRY

    cls = MODEL_REGISTRY.get(ckpt.get("model_class") or "")
    if not hasattr(cls, "config_kwargs"):
        return ckpt["model_kwargs"]
    try:
        return cls.config_kwargs(ckpt["model_kwargs"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


def build_model(ckpt: dict, device: torch.device | str | None = None) -> torch.nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (eval mode), on ``device``
    (default the CPU): checkpoints hold CPU tensors (:func:`safe_load` maps them there), so one
    saved on any machine loads on any other."""
    from .models import MODEL_REGISTRY

    cls = MODEL_REGISTRY.get(ckpt["model_class"])
    if cls is None:
        raise CheckpointError(f"unknown model class {ckpt['model_class']!r}; "
                              f"known: {sorted(MODEL_REGISTRY)}")
    model = cls.from_config_dict(_current_kwargs(ckpt, "the checkpoint"))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device if device is not None else "cpu").eval()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _plain(value):
    """Compare tuples and lists alike (weights_only round-trips may change one into the other)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
