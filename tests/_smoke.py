"""The smoke dataset for tests that need real emojis, built in a private folder.

It comes from the pinned tarballs in data/raw (npm fetches them once if they are missing, as
notebook 00 does); the build itself goes to ``root``, so a test never touches data/processed.
A test is skipped only when the raw data cannot be fetched (no npm, no network).
"""

from pathlib import Path

import pytest

from helpers import paths
from helpers.data import EmojiDataset, FetchError, build_dataset, load_dataset
from helpers.profiles import get_profile


def build_smoke(root: Path) -> EmojiDataset:
    """Build the smoke profile's dataset under ``root`` (as its processed/ folder) and load it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "PROCESSED_ROOT", Path(root))
        try:
            build_dataset(None, get_profile("smoke"), verbose=False)
        except FetchError as e:
            pytest.skip(f"the raw emoji packages cannot be fetched here: {e}")
        return load_dataset("smoke")
