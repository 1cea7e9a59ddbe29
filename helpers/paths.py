"""Every path of the project, anchored on one PROJECT_ROOT.

Data lives in ``data/`` (``sources.json`` committed, ``raw/`` and ``processed/``
ignored); everything a notebook produces lives in ``artifacts/<profile>/``.
A notebook that needs an artifact asks for it with :func:`require`, which
names the notebook to run first when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

from .models import PRIOR_FAMILIES, prior_checkpoints

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
DATA_DIR = PROJECT_ROOT / "data"
SOURCES_JSON = DATA_DIR / "sources.json"
DOCS_RESULTS_DIR = PROJECT_ROOT / "docs" / "results"

# Overridable so that tests (and users with a big scratch disk) can point the
# mutable trees elsewhere without touching the code.
RAW_DIR = Path(os.environ.get("EMOJIVQ_RAW_DIR", DATA_DIR / "raw"))
PROCESSED_ROOT = Path(os.environ.get("EMOJIVQ_PROCESSED_DIR", DATA_DIR / "processed"))
ARTIFACTS_ROOT = Path(os.environ.get("EMOJIVQ_ARTIFACTS_DIR", PROJECT_ROOT / "artifacts"))


def samples_name(prior: str, size: int) -> str:
    """The artifact name of a prior's FID samples at ``size`` px (a PixelCNN samples at 32 and 64)."""
    return f"samples_{prior}_{size}px"


# The notebook that trains the prior families of each image size (helpers.models.PRIOR_FAMILIES).
PRIOR_NOTEBOOKS = {32: "02_pixelcnn", 64: "04_pixelsnail"}

# Which notebook writes which artifact: the "run NN_name first" messages come from here.
PRODUCERS = {
    "dataset": "00_data",
    "vqvae": "01_vqvae",
    "codes_vqvae": "01_vqvae",
    "vqvae_metrics": "01_vqvae",
    "prior_vqvae_metrics": "02_pixelcnn",
    "vqvae2": "03_vqvae2",
    "codes_vqvae2": "03_vqvae2",
    "vqvae2_metrics": "03_vqvae2",
    "prior_vqvae2_metrics": "04_pixelsnail",
    **{name: notebook for size, notebook in PRIOR_NOTEBOOKS.items() for name in prior_checkpoints(size)},
    **{samples_name(family, size): notebook for size, notebook in PRIOR_NOTEBOOKS.items()
       for family in PRIOR_FAMILIES[size]},
    "superres": "05_extensions",
    "extensions_metrics": "05_extensions",
    "analysis_metrics": "06_analysis",
}


class MissingArtifactError(FileNotFoundError):
    """An input of a notebook does not exist yet: the message says which notebook makes it."""


def processed_dir(profile: str) -> Path:
    return PROCESSED_ROOT / profile


def dataset_path(profile: str) -> Path:
    return processed_dir(profile) / "dataset.pt"


def artifacts_dir(profile: str) -> Path:
    return ARTIFACTS_ROOT / profile


def checkpoint_path(profile: str, name: str) -> Path:
    """``artifacts/<profile>/<name>.pt`` — models and code grids alike."""
    return artifacts_dir(profile) / f"{name}.pt"


def samples_path(profile: str, prior: str, size: int) -> Path:
    """``artifacts/<profile>/samples_<prior>_<size>px.pt``: a prior's FID samples
    (:class:`helpers.artifacts.SampleSet`)."""
    return artifacts_dir(profile) / f"{samples_name(prior, size)}.pt"


def metrics_path(profile: str, stage: str) -> Path:
    return artifacts_dir(profile) / "metrics" / f"{stage}.json"


def runs_dir(profile: str) -> Path:
    return artifacts_dir(profile) / "runs"


def figures_dir(profile: str) -> Path:
    return artifacts_dir(profile) / "figures"


def cache_dir() -> Path:
    """Expensive derived values (Inception features of real image sets), keyed by the data
    fingerprint in the file name, so profiles with the same data (quick, full) share them."""
    return ARTIFACTS_ROOT / "cache"


def require(path: Path, artifact: str) -> Path:
    """Return ``path`` if it exists, else stop with the notebook that produces ``artifact``."""
    path = Path(path)
    if not path.exists():
        producer = PRODUCERS.get(artifact, "the notebook that produces it")
        raise MissingArtifactError(
            f"{artifact} is missing ({path}): run {producer} first "
            f"(or `python -m helpers.pipeline --profile <profile> --only {producer[:2]}`)."
        )
    return path
