"""The errors and the warning of the data package: each message says what is wrong and what to do."""

from __future__ import annotations


class DataError(RuntimeError):
    """The data cannot be built: the message says what is wrong and what to do."""


class ChecksumError(DataError):
    """A tarball's sha256 differs from the one pinned in data/sources.json."""


class FetchError(DataError):
    """``npm pack`` is missing or failed."""


class UnsafeArchiveError(DataError):
    """A tar member would land outside the extraction folder."""


class DataWarning(UserWarning):
    """Something in a source was skipped or adapted; the build went on."""

