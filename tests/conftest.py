"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The unit tests use tiny models: one thread is as fast, and does not crawl when the machine
    is busy (two OpenMP threads on two shared cores wait on each other at every small op;
    docs/PERFORMANCE.md, "A busy machine")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
