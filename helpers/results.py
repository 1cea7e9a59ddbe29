"""The metrics files: ``artifacts/<profile>/metrics/<stage>.json``, one per notebook stage, its
numbers beside a ``"protocol"`` object that says how they were measured (and on which machine
and commit, added here). docs/ARCHITECTURE.md lists the stages and their keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import paths
from .checkpoints import atomic_write_json
from .runtime import machine


def save_metrics(profile: str, stage: str, values: dict, protocol: dict) -> Path:
    """Write ``artifacts/<profile>/metrics/<stage>.json`` atomically, with its protocol beside the values:
    the one given, and the machine and commit it ran on (:func:`helpers.runtime.machine`)."""
    protocol = {**protocol, "machine": machine()}
    return atomic_write_json({**_plain(values), "protocol": _plain(protocol)}, paths.metrics_path(profile, stage))


def load_metrics(profile: str, stage: str) -> dict:
    """The metrics a stage wrote; "run NN_name first" when it has not run."""
    path = paths.require(paths.metrics_path(profile, stage), f"{stage}_metrics")
    return json.loads(path.read_text())


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value
