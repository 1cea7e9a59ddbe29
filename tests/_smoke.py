"""The smoke dataset for tests that need real emojis, built in a private folder.

It comes from the pinned tarballs in data/raw (npm fetches them once if they are missing, as
notebook 00 does); the build itself goes to ``root``, so a test never touches data/processed.
A test is skipped only when the raw data cannot be fetched (no npm, no network), and then
only outside CI: with ``CI=true`` it fails, so that CI cannot pass without the data tests.
"""

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import paths
from helpers.data import EmojiDataset, FetchError, build_dataset, load_dataset
from helpers.profiles import get_profile


def skip_outside_ci(message: str):
    """Skip the test for something this machine lacks; under ``CI=true``, where a skip would hide
    that the test never ran, fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}\n(CI=true: this fails the test instead of skipping it)", pytrace=False)
    pytest.skip(message)


@contextmanager
def skip_if_unfetchable():
    """Skip the test when the block fails to fetch the raw emoji packages (:func:`skip_outside_ci`)."""
    try:
        yield
    except FetchError as e:
        skip_outside_ci(f"the raw emoji packages cannot be fetched here: {e}")


def build_smoke(root: Path) -> EmojiDataset:
    """Build the smoke profile's dataset under ``root`` (as its processed/ folder) and load it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "PROCESSED_ROOT", Path(root))
        with skip_if_unfetchable():
            build_dataset(None, get_profile("smoke"), verbose=False)
        return load_dataset("smoke")
